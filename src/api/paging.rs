//! Keyset paging shared by the search endpoints: `afterid` is the last key
//! of the previous page, `maxresults` the page size.

use super::error::ApiError;

pub const DEFAULT_MAX_RESULTS: i64 = 100;
pub const MAX_MAX_RESULTS: i64 = 1000;

pub fn max_results(given: Option<&str>) -> Result<i64, ApiError> {
    let Some(s) = given else { return Ok(DEFAULT_MAX_RESULTS) };
    match s.trim().parse::<i64>() {
        Ok(n) if (1..=MAX_MAX_RESULTS).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!("maxresults: must be a whole number from 1 to {MAX_MAX_RESULTS}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert_eq!(max_results(None).unwrap(), 100);
        assert_eq!(max_results(Some("1000")).unwrap(), 1000);
        assert!(max_results(Some("1001")).is_err());
        assert!(max_results(Some("0")).is_err());
        assert!(max_results(Some("ten")).is_err());
    }
}

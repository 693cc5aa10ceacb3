//! Keyset paging shared by the search endpoints: `afterid` is the last key
//! of the previous page, `maxresults` the page size.

use super::error::ApiError;

/// A list's query parameters: its own (given), then the paging ones every
/// list takes (`afterid`, `maxresults`) and `domain` (read by the caller's
/// extractor). Unknown parameters are refused, naming them.
macro_rules! paged_query {
    ($(#[doc = $doc:literal])* pub struct $name:ident { $($(#[doc = $fdoc:literal])* $field:ident: $ty:ty,)* }) => {
        $(#[doc = $doc])*
        #[derive(serde::Deserialize, utoipa::IntoParams)]
        #[serde(deny_unknown_fields)]
        #[into_params(parameter_in = Query)]
        pub struct $name {
            $($(#[doc = $fdoc])* $field: $ty,)*
            /// The last key of the previous page.
            afterid: Option<String>,
            /// Page size, 1-1000 (default 100).
            maxresults: Option<String>,
            /// Superusers: act in this domain.
            #[allow(dead_code)]
            domain: Option<String>,
        }
    };
}
pub(crate) use paged_query;

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

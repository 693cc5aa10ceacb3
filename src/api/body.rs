//! Request bodies: JSON objects of at most 64 KiB.

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::header;
use bytes::BytesMut;
use http_body_util::BodyExt;
use serde_json::{Map, Value};

use super::error::ApiError;

pub const MAX_BODY: usize = 64 * 1024;

/// A body over the limit but under this is read and thrown away before the
/// 413 goes out. Closing a connection with unread data makes the kernel
/// reset it, and a reset can destroy the 413 before the client reads it;
/// reading a little more (as nginx's lingering close does) lets the client
/// see why it was refused.
const MAX_DRAIN: usize = 1024 * 1024;

async fn read_limited(body: Body) -> Result<Bytes, ApiError> {
    let mut body = body;
    let mut buf = BytesMut::new();
    let mut seen = 0usize;
    let read = async {
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| read_error(&e))?;
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > MAX_DRAIN {
                    break;
                }
                if seen <= MAX_BODY {
                    buf.extend_from_slice(&data);
                }
            }
        }
        Ok::<_, ApiError>(())
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), read).await.map_err(|_| ApiError::RequestTimeout)??;
    if seen > MAX_BODY {
        return Err(ApiError::PayloadTooLarge(MAX_BODY));
    }
    Ok(buf.freeze())
}

/// Why a request body could not be read: the client stopped sending it in
/// time (see `http_listener::timed_body`: 408), or the connection failed.
pub fn read_error(e: &(dyn std::error::Error + 'static)) -> ApiError {
    if timed_out(e) {
        return ApiError::RequestTimeout;
    }
    ApiError::BadRequest(format!("could not read the body: {e}"))
}

/// Whether `e` (or what caused it) is a body that stopped arriving.
pub fn timed_out(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |c| c.source()).any(|c| c.is::<crate::http_listener::timed_body::BodyTimedOut>())
}

/// A JSON object body.
pub struct JsonObject(pub Map<String, Value>);

/// Any JSON body (an object, or an array for bulk calls). The size is
/// checked from `Content-Length` before anything is read, and again while
/// reading (for chunked bodies).
pub struct JsonBody(pub Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, _: &S) -> Result<Self, ApiError> {
        let declared =
            req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > MAX_DRAIN as u64) {
            return Err(ApiError::PayloadTooLarge(MAX_BODY));
        }
        let bytes = read_limited(req.into_body()).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            // No body at all: `null`, which object bodies then refuse.
            return Ok(JsonBody(Value::Null));
        }
        serde_json::from_slice::<Strict>(&bytes)
            .map(|v| JsonBody(v.0))
            .map_err(|e| ApiError::BadRequest(format!("Bad JSON: {e}")))
    }
}

/// A JSON value in which no object names a key twice. RFC 8259 leaves
/// duplicates to the parser, and parsers disagree (first wins, last wins):
/// a body that one component reads one way and another the other way is
/// refused instead.
struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> serde::de::Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_string()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if object.contains_key(&key) {
                return Err(serde::de::Error::custom(format!("the key {key:?} appears twice")));
            }
            let Strict(v) = map.next_value()?;
            object.insert(key, v);
        }
        Ok(Value::Object(object))
    }
}

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match JsonBody::from_request(req, state).await?.0 {
            Value::Object(map) => Ok(JsonObject(map)),
            _ => Err(ApiError::BadRequest("Bad JSON: the body must be a JSON object".into())),
        }
    }
}

/// A string field; Jingl sends everything as strings, numbers are accepted
/// where a string of digits is meant.
pub fn string_field(field: &'static str, v: &Value) -> Result<String, ApiError> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        _ => Err(ApiError::BadRequest(format!("{field}: must be a string"))),
    }
}

/// A string field that `null` or `""` clears.
pub fn optional_string_field(field: &'static str, v: &Value) -> Result<Option<String>, ApiError> {
    match v {
        Value::Null => Ok(None),
        other => string_field(field, other).map(|s| Some(s).filter(|s| !s.is_empty())),
    }
}

/// A whole number, as a JSON number or a string of digits.
/// An optional JSON object of options (an empty body is no options).
pub fn options(body: Value) -> Result<Map<String, Value>, ApiError> {
    match body {
        Value::Null => Ok(Map::new()),
        Value::Object(m) => Ok(m),
        _ => Err(ApiError::BadRequest("Bad JSON: the body must be a JSON object".into())),
    }
}

pub fn integer_field(field: &'static str, v: &Value) -> Result<i64, ApiError> {
    let n = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    n.ok_or_else(|| ApiError::BadRequest(format!("{field}: must be a whole number")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_given_twice_is_refused_at_any_depth() {
        let parse = |s: &str| serde_json::from_str::<Strict>(s).map(|v| v.0);
        assert_eq!(parse(r#"{"a":1,"b":[{"c":null}]}"#).unwrap(), serde_json::json!({"a":1,"b":[{"c":null}]}));
        let err = parse(r#"{"name":"A","name":"B"}"#).unwrap_err().to_string();
        assert!(err.contains("\"name\" appears twice"), "{err}");
        assert!(parse(r#"[{"x":{"y":1,"y":2}}]"#).is_err());
    }
}

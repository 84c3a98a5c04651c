//! Strict query strings: every route names the parameters it accepts (and which may repeat);
//! anything else, a repeated parameter or a malformed value is a 400 with a code, so typos never
//! pass silently.

use std::time::Duration;

use cairn_node::api::Consistency;

use super::error::ApiError;
use super::labels::{parse_label_pair, validate_labels};

/// The longest a long poll may wait.
pub const WAIT_MAX: Duration = Duration::from_secs(300);

/// A number written as plain ASCII decimal digits and nothing else: Rust's own parser also
/// takes a leading `+`, which no client means to send.
pub fn decimal_u64(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A parsed query string, checked against the parameters a route accepts.
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

/// Which parameters a route accepts.
pub struct Accepts<'a> {
    pub once: &'a [&'a str],
    pub repeated: &'a [&'a str],
}

impl Query {
    pub fn parse(raw: Option<&str>, accepted: &[&str]) -> Result<Query, ApiError> {
        Query::parse_with(raw, Accepts { once: accepted, repeated: &[] })
    }

    pub fn parse_with(raw: Option<&str>, accepts: Accepts<'_>) -> Result<Query, ApiError> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            let repeatable = accepts.repeated.contains(&name.as_ref());
            if !repeatable && !accepts.once.contains(&name.as_ref()) {
                let all: Vec<&str> = accepts.once.iter().chain(accepts.repeated).copied().collect();
                let message = format!("unknown query parameter {name:?}; this route accepts {}", all.join(", "));
                return Err(ApiError::bad_request("unknown_parameter", message));
            }
            if !repeatable && pairs.iter().any(|(seen, _)| seen == name.as_ref()) {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("query parameter {name:?} is repeated"),
                ));
            }
            pairs.push((name.into_owned(), value.into_owned()));
        }
        Ok(Query { pairs })
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(seen, _)| seen == name).map(|(_, value)| value.as_str())
    }

    fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.pairs.iter().filter(move |(seen, _)| seen == name).map(|(_, value)| value.as_str())
    }

    /// A flag: present without a value, `true`/`1` or `false`/`0`.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.get(name) {
            None | Some("false" | "0") => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some(other) => Err(invalid(name, other, "true or false")),
        }
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.get(name)
            .map(|value| decimal_u64(value).ok_or_else(|| invalid(name, value, "a non-negative integer")))
            .transpose()
    }

    /// A count between 1 and `max`, or `default` when absent.
    pub fn limit(&self, name: &str, default: usize, max: usize) -> Result<usize, ApiError> {
        match self.u64(name)? {
            None => Ok(default),
            Some(limit) if limit >= 1 && limit as usize <= max => Ok(limit as usize),
            Some(limit) => Err(invalid(name, &limit.to_string(), &format!("between 1 and {max}"))),
        }
    }

    pub fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.get("consistency") {
            None | Some("linearizable") => Ok(Consistency::Linearizable),
            Some("lease") => Ok(Consistency::Lease),
            Some("stale") => Ok(Consistency::Stale),
            Some(other) => Err(invalid("consistency", other, "linearizable, lease or stale")),
        }
    }

    /// `wait=20s` (also `ms`, `m`): how long a long poll may wait, at most [`WAIT_MAX`].
    pub fn wait(&self) -> Result<Option<Duration>, ApiError> {
        let Some(text) = self.get("wait") else { return Ok(None) };
        let wait = parse_duration(text).ok_or_else(|| invalid("wait", text, "a duration like 500ms, 20s or 5m"))?;
        if wait > WAIT_MAX {
            return Err(invalid("wait", text, "at most 5m"));
        }
        Ok(Some(wait))
    }

    /// Every `label=key:value`, validated.
    pub fn labels(&self) -> Result<Vec<(String, String)>, ApiError> {
        let pairs = self.all("label").map(parse_label_pair).collect::<Result<Vec<_>, _>>()?;
        validate_labels(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        Ok(pairs)
    }
}

/// `250ms`, `20s`, `5m`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    match unit {
        "ms" => Some(Duration::from_millis(number)),
        "s" => Some(Duration::from_secs(number)),
        "m" => number.checked_mul(60).map(Duration::from_secs),
        _ => None,
    }
}

pub fn invalid(name: &str, value: &str, expected: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_parameter",
        format!("query parameter {name}={value:?} is invalid: expected {expected}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_parameter_is_refused_with_the_accepted_list() {
        let error = Query::parse(Some("consistency=stale&colour=red"), &["consistency"]).unwrap_err();
        assert_eq!(error.code, "unknown_parameter");
        assert!(error.message.contains("colour"));
    }

    #[test]
    fn flags_accept_bare_names_and_booleans() {
        let query = Query::parse(Some("raw&redirect=false"), &["raw", "redirect"]).unwrap();
        assert!(query.flag("raw").unwrap());
        assert!(!query.flag("redirect").unwrap());
        let bad = Query::parse(Some("raw=maybe"), &["raw"]).unwrap();
        assert_eq!(bad.flag("raw").unwrap_err().code, "invalid_parameter");
    }

    #[test]
    fn a_bad_consistency_or_revision_is_invalid() {
        let query =
            Query::parse(Some("consistency=eventual&prev_revision=-1"), &["consistency", "prev_revision"]).unwrap();
        assert_eq!(query.consistency().unwrap_err().code, "invalid_parameter");
        assert_eq!(query.u64("prev_revision").unwrap_err().code, "invalid_parameter");
    }

    #[test]
    fn only_declared_parameters_may_repeat() {
        assert_eq!(Query::parse(Some("raw&raw"), &["raw"]).unwrap_err().code, "invalid_parameter");
        let accepts = Accepts { once: &["prefix"], repeated: &["label"] };
        let query = Query::parse_with(Some("label=app:order&label=env:prod"), accepts).unwrap();
        let labels = query.labels().unwrap();
        assert_eq!(labels, [("app".into(), "order".into()), ("env".into(), "prod".into())]);
    }

    #[test]
    fn waits_are_durations_of_at_most_five_minutes() {
        let ok = Query::parse(Some("wait=20s"), &["wait"]).unwrap();
        assert_eq!(ok.wait().unwrap(), Some(Duration::from_secs(20)));
        for bad in ["wait=6m", "wait=20", "wait=soon"] {
            let query = Query::parse(Some(bad), &["wait"]).unwrap();
            assert_eq!(query.wait().unwrap_err().code, "invalid_parameter", "{bad}");
        }
    }

    #[test]
    fn a_label_without_a_colon_is_a_syntax_error() {
        let accepts = Accepts { once: &[], repeated: &["label"] };
        let query = Query::parse_with(Some("label=app"), accepts).unwrap();
        assert_eq!(query.labels().unwrap_err().code, "invalid_label");
    }
}

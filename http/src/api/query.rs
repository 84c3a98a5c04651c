//! Strict query strings: every route names the parameters it accepts; anything else, a repeated
//! parameter or a malformed value is a 400 with a code, so typos never pass silently.

use std::collections::BTreeMap;

use cairn_node::api::Consistency;

use super::error::ApiError;

/// A parsed query string, checked against the parameters a route accepts.
#[derive(Debug, Default)]
pub struct Query {
    pairs: BTreeMap<String, String>,
}

impl Query {
    pub fn parse(raw: Option<&str>, accepted: &[&str]) -> Result<Query, ApiError> {
        let mut pairs = BTreeMap::new();
        for (name, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            if !accepted.contains(&name.as_ref()) {
                let message = format!("unknown query parameter {name:?}; this route accepts {}", accepted.join(", "));
                return Err(ApiError::bad_request("unknown_parameter", message));
            }
            if pairs.insert(name.to_string(), value.into_owned()).is_some() {
                return Err(ApiError::bad_request(
                    "invalid_parameter",
                    format!("query parameter {name:?} is repeated"),
                ));
            }
        }
        Ok(Query { pairs })
    }

    /// A flag: present without a value, `true`/`1` or `false`/`0`.
    pub fn flag(&self, name: &str) -> Result<bool, ApiError> {
        match self.pairs.get(name).map(String::as_str) {
            None | Some("false" | "0") => Ok(false),
            Some("" | "true" | "1") => Ok(true),
            Some(other) => Err(invalid(name, other, "true or false")),
        }
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ApiError> {
        self.pairs
            .get(name)
            .map(|value| value.parse().map_err(|_| invalid(name, value, "a non-negative integer")))
            .transpose()
    }

    pub fn consistency(&self) -> Result<Consistency, ApiError> {
        match self.pairs.get("consistency").map(String::as_str) {
            None | Some("linearizable") => Ok(Consistency::Linearizable),
            Some("lease") => Ok(Consistency::Lease),
            Some("stale") => Ok(Consistency::Stale),
            Some(other) => Err(invalid("consistency", other, "linearizable, lease or stale")),
        }
    }
}

fn invalid(name: &str, value: &str, expected: &str) -> ApiError {
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
    fn a_repeated_parameter_is_refused() {
        assert_eq!(Query::parse(Some("raw&raw"), &["raw"]).unwrap_err().code, "invalid_parameter");
    }
}

//! Label syntax, as the node's contract states it (`cairn_node::validate`): names of 1 to 63
//! characters from `A-Z a-z 0-9 . _ - /`, values of at most 255 characters without control
//! characters, at most 32 labels on a record.

use cairn_node::record::Labels;
use cairn_node::validate::{self, LABELS_MAX};

use super::error::ApiError;

/// Checks every label; the first offence is the error.
pub fn validate_labels<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(), ApiError> {
    let mut count = 0;
    for (name, value) in labels {
        count += 1;
        validate::label(name, value).map_err(ApiError::invalid)?;
    }
    if count > LABELS_MAX {
        return Err(ApiError::bad_request("invalid_label", format!("at most {LABELS_MAX} labels")));
    }
    Ok(())
}

pub fn validate_label_map(labels: &Labels) -> Result<(), ApiError> {
    validate_labels(labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
}

/// `name:value`, as in a `label=` query parameter.
pub fn parse_label_pair(text: &str) -> Result<(String, String), ApiError> {
    match text.split_once(':') {
        Some((name, value)) => Ok((name.to_string(), value.to_string())),
        None => Err(ApiError::bad_request("invalid_label", format!("label filter {text:?} is not name:value"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked() {
        assert!(validate_labels([("app", "order"), ("team/env", "prod-1")]).is_ok());
        assert_eq!(validate_labels([("", "x")]).unwrap_err().code, "invalid_label");
        assert_eq!(validate_labels([("bad name", "x")]).unwrap_err().code, "invalid_label");
        assert_eq!(validate_labels([("ok", "line\nbreak")]).unwrap_err().code, "invalid_label");
        let many: Vec<(String, String)> = (0..33).map(|i| (format!("l{i}"), String::new())).collect();
        assert!(validate_labels(many.iter().map(|(k, v)| (k.as_str(), v.as_str()))).is_err());
    }
}

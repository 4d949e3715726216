//! Config errors: each names the field path (`smtp.max_message_size`, `tenant[1].sender_domains[0]`) and
//! the reason, so an operator can fix the file without reading code.

use std::fmt;

/// One problem with the config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigError {
    /// Where the problem is, as a TOML path: `smtp.listen`, `tenant[0].username`; empty when it concerns
    /// the whole file (unreadable, TOML syntax error).
    pub path: String,
    /// What is wrong and, where possible, what is accepted instead.
    pub reason: String,
}

impl ConfigError {
    /// An error at `path` (a TOML field path; may be empty).
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Every problem found in a config file. Validation does not stop at the first problem, so the operator
/// can fix them all in one edit. Never empty when returned as an `Err`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The errors, in file order for parse errors and in field order for validation errors.
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// The error at exactly `path`, if any (handy in tests and tooling).
    pub fn at(&self, path: &str) -> Option<&ConfigError> {
        self.0.iter().find(|error| error.path == path)
    }
}

impl From<ConfigError> for ConfigErrors {
    fn from(error: ConfigError) -> Self {
        ConfigErrors(vec![error])
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_path_unless_empty() {
        let errors = ConfigErrors(vec![
            ConfigError::new("smtp.listen", "must not be empty"),
            ConfigError::new("", "cannot read x.toml: not found"),
        ]);
        assert_eq!(
            errors.to_string(),
            "smtp.listen: must not be empty\ncannot read x.toml: not found"
        );
        assert_eq!(
            errors.at("smtp.listen").map(|e| e.reason.as_str()),
            Some("must not be empty")
        );
    }
}

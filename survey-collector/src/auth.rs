//! Bearer tokens: where they come from and how a request's is checked.
//!
//! Tokens are kept as SHA-256 digests and compared in constant time.

use std::path::Path;

use sha2::{Digest, Sha256};

/// The accepted bearer tokens; empty means no token is required.
#[derive(Clone, Default)]
pub struct Tokens {
    digests: Vec<[u8; 32]>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokens({} configured)", self.digests.len())
    }
}

/// A token that cannot be used, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}: {problem}")]
pub struct TokenError {
    /// `--token`, `SURVEY_COLLECTOR_TOKENS` or `--token-file PATH:LINE`.
    pub source_name: String,
    /// What is wrong with it.
    pub problem: String,
}

impl Tokens {
    /// Whether any token is configured.
    pub fn required(&self) -> bool {
        !self.digests.is_empty()
    }

    /// How many tokens are configured.
    pub fn len(&self) -> usize {
        self.digests.len()
    }

    /// Whether no token is configured.
    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Adds one token; `source_name` names where it came from, for errors.
    pub fn add(&mut self, token: &str, source_name: &str) -> Result<(), TokenError> {
        let problem = if token.is_empty() {
            Some("a token cannot be empty".to_string())
        } else if token.len() > 512 {
            Some("a token is at most 512 characters".to_string())
        } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
            Some("a token holds printable ASCII characters only, no spaces".to_string())
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(TokenError {
                source_name: source_name.to_string(),
                problem,
            });
        }
        self.digests.push(Sha256::digest(token.as_bytes()).into());
        Ok(())
    }

    /// Adds the comma-separated tokens of `SURVEY_COLLECTOR_TOKENS`.
    pub fn add_list(&mut self, list: &str, source_name: &str) -> Result<(), TokenError> {
        for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            self.add(token, source_name)?;
        }
        Ok(())
    }

    /// Adds the tokens of a file: one per line; blank lines and lines
    /// starting with `#` are skipped.
    pub fn add_file(&mut self, path: &Path) -> Result<(), TokenError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenError {
            source_name: format!("--token-file {}", path.display()),
            problem: format!("cannot read it: {e}"),
        })?;
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            self.add(line, &format!("--token-file {}:{}", path.display(), i + 1))?;
        }
        Ok(())
    }

    /// Whether an `Authorization` header value carries an accepted token.
    /// Always true when no token is configured.
    pub fn allows(&self, authorization: Option<&[u8]>) -> bool {
        if !self.required() {
            return true;
        }
        let Some(header) = authorization else {
            return false;
        };
        let Some(token) = bearer(header) else {
            return false;
        };
        let digest: [u8; 32] = Sha256::digest(token).into();
        // Every configured token is compared, each in constant time.
        self.digests
            .iter()
            .fold(false, |found, d| found | constant_time_eq(d, &digest))
    }
}

/// The token of `Bearer TOKEN` (scheme case-insensitive).
fn bearer(header: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = header.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_checked() {
        let mut tokens = Tokens::default();
        assert!(tokens.allows(None), "no token configured: open");
        tokens.add("s3cret-token", "--token").unwrap();
        tokens
            .add_list(" other , ,third", "SURVEY_COLLECTOR_TOKENS")
            .unwrap();
        assert_eq!(tokens.len(), 3);
        assert!(tokens.allows(Some(b"Bearer s3cret-token")));
        assert!(tokens.allows(Some(b"bearer third")));
        assert!(!tokens.allows(Some(b"Bearer s3cret-tokens")));
        assert!(!tokens.allows(Some(b"Basic s3cret-token")));
        assert!(!tokens.allows(Some(b"s3cret-token")));
        assert!(!tokens.allows(Some(b"Bearer ")));
        assert!(!tokens.allows(None));
    }

    #[test]
    fn bad_tokens_name_their_source() {
        let mut tokens = Tokens::default();
        let err = tokens.add("has space", "--token").unwrap_err();
        assert_eq!(
            err.to_string(),
            "--token: a token holds printable ASCII characters only, no spaces"
        );
        let dir = std::env::temp_dir().join(format!("survey-tokens-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("tokens");
        std::fs::write(&file, "# comment\n\ngood-token\nbad token\n").unwrap();
        let err = tokens.add_file(&file).unwrap_err();
        assert!(
            err.to_string()
                .ends_with(":4: a token holds printable ASCII characters only, no spaces"),
            "{err}"
        );
        let err = tokens.add_file(&dir.join("absent")).unwrap_err();
        assert!(err.to_string().contains("cannot read it"), "{err}");
    }
}

//! The dataplane token kodiak-dp presents: from `--dataplane-token` or
//! `--dataplane-token-file`. It goes in the bootstrap request, and Envoy
//! sends it again when each ADS stream opens.

use std::path::Path;

use anyhow::{Context, bail};

/// The token given, trimmed of surrounding whitespace (a file usually ends
/// with a newline); `None` when neither flag is set.
pub fn load(inline: Option<&str>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    match (inline, file) {
        (Some(token), _) => {
            let token = token.trim();
            if token.is_empty() {
                bail!("--dataplane-token is empty: give the token (kodiakctl generate dataplane-token ...)");
            }
            Ok(Some(token.to_owned()))
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the dataplane token file {}", path.display()))?;
            let token = text.trim();
            if token.is_empty() {
                bail!(
                    "the dataplane token file {} is empty: write the token there (kodiakctl generate dataplane-token ... > {})",
                    path.display(),
                    path.display()
                );
            }
            if token.contains(char::is_whitespace) {
                bail!(
                    "the dataplane token file {} holds more than one word: it should hold just the token",
                    path.display()
                );
            }
            Ok(Some(token.to_owned()))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_comes_from_the_flag_or_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "eyJ.abc.def\n").unwrap();
        assert_eq!(load(None, Some(&file)).unwrap().as_deref(), Some("eyJ.abc.def"));
        assert_eq!(load(Some(" t0k "), None).unwrap().as_deref(), Some("t0k"));
        assert_eq!(load(None, None).unwrap(), None);
    }

    #[test]
    fn bad_token_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let error = format!("{:#}", load(None, Some(&missing)).unwrap_err());
        assert!(error.contains("cannot read the dataplane token file") && error.contains("nope"), "{error}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let error = load(None, Some(&empty)).unwrap_err().to_string();
        assert!(error.contains("is empty") && error.contains("empty"), "{error}");
        let two = dir.path().join("two");
        std::fs::write(&two, "a b\n").unwrap();
        assert!(load(None, Some(&two)).unwrap_err().to_string().contains("more than one word"));
        assert!(load(Some("  "), None).unwrap_err().to_string().contains("--dataplane-token is empty"));
    }
}

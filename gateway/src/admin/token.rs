//! The admin API's bearer token: read once from a file readable by its owner only, held in a
//! zeroizing string, compared in constant time, never printed.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use axum::http::HeaderValue;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::Error;

/// Longest token accepted, so a wrong path (a large file) fails clearly.
const MAX_LEN: usize = 4096;

/// A bearer token. `Debug` shows nothing of it.
pub struct Token(Zeroizing<String>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(redacted)")
    }
}

impl Token {
    /// Reads the token from `path`: surrounding whitespace is trimmed; the file must not be
    /// accessible to group or others.
    ///
    /// # Errors
    /// [`Error::Token`] naming the file and the problem, never its content.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let fail = |reason: String| Error::Token {
            path: path.display().to_string(),
            reason,
        };
        let meta = fs::metadata(path).map_err(|e| fail(format!("cannot be read: {e}")))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(fail(format!(
                "has mode {mode:04o}; it must be readable by its owner only: run `chmod 600 {}`",
                path.display()
            )));
        }
        if meta.len() > MAX_LEN as u64 {
            return Err(fail(format!("is larger than {MAX_LEN} bytes")));
        }
        let text = Zeroizing::new(
            fs::read_to_string(path).map_err(|e| fail(format!("cannot be read: {e}")))?,
        );
        let token = text.trim();
        if token.is_empty() {
            return Err(fail("is empty".to_owned()));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fail(
                "holds characters a bearer token cannot carry (only printable ASCII without spaces)"
                    .to_owned(),
            ));
        }
        Ok(Self(Zeroizing::new(token.to_owned())))
    }

    /// Returns whether an `Authorization` header value is `Bearer <this token>`. The
    /// comparison takes the same time wherever the first difference is; only a length
    /// mismatch returns early, which reveals the length and nothing of the content.
    pub fn is_presented_in(&self, header: Option<&HeaderValue>) -> bool {
        let Some(presented) = header
            .map(HeaderValue::as_bytes)
            .and_then(|value| value.strip_prefix(b"Bearer "))
        else {
            return false;
        };
        bool::from(presented.ct_eq(self.0.as_bytes()))
    }
}

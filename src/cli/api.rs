//! A small blocking client of the server's own API, for CLI commands that change something
//! while a server holds the database (`optimize --url`, `jobs respond --url`, `jobs cancel
//! --url`): one SQLite file has one writer, so the change goes through it. Plain HTTP/1.1 over
//! a `TcpStream` (the server speaks nothing else); the token comes from `SKILL_FLEET_API_TOKEN`.

use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A server's API.
#[derive(Debug, Clone)]
pub struct Api {
    url: String,
    authority: String,
    token: Option<String>,
}

/// What went wrong talking to the server.
#[derive(Debug, thiserror::Error)]
pub enum ApiCallError {
    /// The URL is not `http://host:port`.
    #[error("`{0}` is not a server URL; write it as http://HOST:PORT")]
    BadUrl(String),
    /// No connection, or it broke.
    #[error("cannot reach the server at `{url}`: {reason}")]
    Unreachable {
        /// The server.
        url: String,
        /// Why.
        reason: String,
    },
    /// The server refused the request: its status and error message.
    #[error("the server answered {status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The `error` of the answer (and its first detail's help, when there is one).
        message: String,
    },
}

impl ApiCallError {
    /// Exit code: 4 for a request the server found invalid (4xx), 5 otherwise.
    pub fn exit(&self) -> super::Exit {
        match self {
            ApiCallError::Refused { status, .. } if (400..500).contains(status) => {
                super::Exit::InvalidInput
            }
            ApiCallError::BadUrl(_) => super::Exit::Usage,
            _ => super::Exit::Io,
        }
    }
}

impl Api {
    /// The API at `url` (`http://127.0.0.1:8000`), with the token of `SKILL_FLEET_API_TOKEN`.
    pub fn new(url: &str) -> Result<Api, ApiCallError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| ApiCallError::BadUrl(url.to_string()))?;
        let authority = rest.trim_end_matches('/').to_string();
        if authority.is_empty() || authority.contains('/') {
            return Err(ApiCallError::BadUrl(url.to_string()));
        }
        Ok(Api {
            url: url.trim_end_matches('/').to_string(),
            authority,
            token: std::env::var("SKILL_FLEET_API_TOKEN")
                .ok()
                .filter(|t| !t.is_empty()),
        })
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `POST path` with a JSON body; the JSON answer of a 2xx.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ApiCallError> {
        let unreachable = |reason: String| ApiCallError::Unreachable {
            url: self.url.clone(),
            reason,
        };
        let addr = self
            .authority
            .to_socket_addrs()
            .map_err(|e| unreachable(e.to_string()))?
            .next()
            .ok_or_else(|| unreachable("no address".into()))?;
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10))
            .map_err(|e| unreachable(e.to_string()))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
        let body = serde_json::to_vec(body).unwrap_or_default();
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.authority,
            body.len()
        );
        if let Some(t) = &self.token {
            head.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())
            .and_then(|()| s.write_all(&body))
            .map_err(|e| unreachable(e.to_string()))?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)
            .map_err(|e| unreachable(e.to_string()))?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or_else(|| unreachable("the answer has no HTTP head".into()))?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| unreachable("the answer has no HTTP status".into()))?;
        let value: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let mut message = value["error"]
            .as_str()
            .unwrap_or("no error message")
            .to_string();
        if let Some(help) = value["details"][0]["help"].as_str() {
            message.push_str(&format!(" (help: {help})"));
        }
        Err(ApiCallError::Refused { status, message })
    }
}

/// The server URL in a lock holder's text (`pid 12 (skill-fleet serve on http://…)`).
pub fn url_in(holder: &str) -> Option<&str> {
    let start = holder.find("http://")?;
    let rest = &holder[start..];
    Some(rest.split([')', ' ']).next().unwrap_or(rest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_found_in_lock_holders() {
        assert!(Api::new("http://127.0.0.1:8000/").is_ok());
        assert!(matches!(
            Api::new("127.0.0.1:8000"),
            Err(ApiCallError::BadUrl(_))
        ));
        assert!(matches!(
            Api::new("http://host/api"),
            Err(ApiCallError::BadUrl(_))
        ));
        assert_eq!(
            url_in("pid 7 (skill-fleet serve on http://127.0.0.1:8000)"),
            Some("http://127.0.0.1:8000")
        );
        assert_eq!(url_in("pid 7 (skill-fleet db)"), None);
    }
}

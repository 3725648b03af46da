//! A realtime (SSE) connection to `GET /api/realtime`, read event by event, as the
//! PocketBase SDK reads it.

use std::time::Duration;

use serde_json::{Value, json};

pub struct Stream {
    pub response: reqwest::Response,
    buffer: String,
    pub client_id: String,
}

impl Stream {
    /// Connect to the Basalt at `base` (`http://host:port`) and read `PB_CONNECT`.
    pub async fn open(client: &reqwest::Client, base: &str) -> Stream {
        let response = client
            .get(format!("{base}/api/realtime"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = Stream {
            response,
            buffer: String::new(),
            client_id: String::new(),
        };
        let (name, data) = stream
            .next(Duration::from_secs(5))
            .await
            .expect("PB_CONNECT");
        assert_eq!(name, "PB_CONNECT");
        stream.client_id = data["clientId"].as_str().unwrap().to_owned();
        stream
    }

    /// The next event (name, data), skipping comments; `None` after `wait`.
    pub async fn next(&mut self, wait: Duration) -> Option<(String, Value)> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = String::new();
                let mut data = String::new();
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("event:") {
                        name = v.to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v);
                    }
                }
                if name.is_empty() {
                    continue; // a keep-alive comment
                }
                return Some((name, serde_json::from_str(&data).unwrap()));
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?;
            match chunk.unwrap() {
                Some(bytes) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                None => return None,
            }
        }
    }

    /// Whether the server closed the stream within `wait`.
    pub async fn closed(&mut self, wait: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return false,
                Ok(Ok(None)) | Ok(Err(_)) => return true,
                Ok(Ok(Some(_))) => {}
            }
        }
    }

    /// Set this client's subscriptions through the Basalt at `base` (any instance):
    /// the status answered.
    pub async fn subscribe(
        &self,
        client: &reqwest::Client,
        base: &str,
        token: Option<&str>,
        topics: &[String],
    ) -> u16 {
        let mut request = client.post(format!("{base}/api/realtime"));
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        request
            .json(&json!({"clientId": self.client_id, "subscriptions": topics}))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

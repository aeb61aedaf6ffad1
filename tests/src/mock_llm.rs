//! Mock LLM providers: `weir-mock-llm` processes (OpenAI and Anthropic wire formats, faults
//! chosen by the model name), each on a free loopback port, killed on drop.

use std::{net::SocketAddr, process::Command, time::Duration};

use http::Method;
use serde_json::Value;

use crate::{
    HttpClient, binaries,
    process::{Process, spawn_listening},
};

const STARTUP_DEADLINE: Duration = Duration::from_secs(10);

pub struct MockLlm {
    address: SocketAddr,
    client: HttpClient,
    _process: Process,
}

impl MockLlm {
    /// A provider named `name` that accepts only `api_key`.
    pub async fn start(name: &str, api_key: &str) -> Self {
        let (process, address) = spawn_listening(
            Command::new(binaries::mock_llm())
                .args(["--listen", "127.0.0.1:0", "--threads", "1", "--name", name])
                .args(["--api-key", api_key]),
            &format!("mock LLM {name}"),
            STARTUP_DEADLINE,
        )
        .await;
        Self {
            address,
            client: HttpClient::new(address),
            _process: process,
        }
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// `http://<address>`, an Anthropic provider's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Every API request it received, in order: `{path, method, headers, body}`.
    pub async fn requests(&self) -> Vec<Value> {
        let reply = self
            .client
            .request(Method::GET, "mock", "/mock/requests")
            .send()
            .await;
        match serde_json::from_str(&reply.body) {
            Ok(Value::Array(requests)) => requests,
            _ => panic!("the mock's request log is not a JSON array: {}", reply.body),
        }
    }
}

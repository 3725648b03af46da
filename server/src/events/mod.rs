//! Record events: the outbox, its dispatcher and the broker it publishes to —
//! RabbitMQ (`BASALT_AMQP_URL`) or an in-process bus (the embedded default). So far it
//! answers whether the broker is reachable; the outbox and publishing arrive with the
//! events issue. Imports only `config` and `db`.

pub mod dispatch;
pub mod outbox;

pub use dispatch::{Event, Events};

use std::time::Duration;

use lapin::{Connection, ConnectionProperties};
use url::Url;

/// How long a readiness ping may take.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the broker is unavailable.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("RabbitMQ did not answer within {0:?}")]
    Timeout(Duration),
    #[error("RabbitMQ: {0}")]
    Amqp(String),
}

/// The broker chosen at start.
#[derive(Clone, Debug)]
pub enum Broker {
    InProcess,
    RabbitMq { url: Url },
}

impl Broker {
    /// Pick the broker from the settings; nothing is contacted yet.
    pub fn new(amqp_url: Option<&Url>) -> Broker {
        match amqp_url {
            None => Broker::InProcess,
            Some(url) => Broker::RabbitMq { url: url.clone() },
        }
    }

    /// The external service behind this broker, if any, for readiness reports.
    pub fn external_name(&self) -> Option<&'static str> {
        match self {
            Broker::InProcess => None,
            Broker::RabbitMq { .. } => Some("rabbitmq"),
        }
    }

    /// Open and close an AMQP connection: proves the broker accepts our credentials.
    ///
    /// Fails when RabbitMQ refuses the connection or does not finish the handshake in time.
    pub async fn ping(&self) -> Result<(), BrokerError> {
        let Broker::RabbitMq { url } = self else {
            return Ok(());
        };
        let ping = async {
            let conn = Connection::connect(url.as_str(), ConnectionProperties::default())
                .await
                .map_err(|e| BrokerError::Amqp(e.to_string()))?;
            conn.close(200, "readiness check".into())
                .await
                .map_err(|e| BrokerError::Amqp(e.to_string()))
        };
        match tokio::time::timeout(PING_TIMEOUT, ping).await {
            Ok(result) => result,
            Err(_) => Err(BrokerError::Timeout(PING_TIMEOUT)),
        }
    }
}

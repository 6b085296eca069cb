//! Cancel keys. Clients get a key minted by hoopd (random pid and secret), never the server's:
//! a CancelRequest with that key — arriving on a new redirected connection — is mapped back to
//! the server that runs the session and sent there with the server's own key.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use bytes::BytesMut;
use rand::RngCore;

use super::{PgContext, PgError, Upstream, io, startup};
use crate::wire::postgres::startup::encode_cancel_request;

struct Entry {
    server_pid: i32,
    server_secret: Vec<u8>,
    upstream: Upstream,
}

/// Sessions by the cancel key hoopd gave their client: (process ID, secret).
type Keys = HashMap<(i32, [u8; 4]), Entry>;

#[derive(Default, Clone)]
pub struct CancelRegistry {
    keys: Arc<Mutex<Keys>>,
}

/// The proxy's key for one session; unregistered when dropped (the session ended).
pub struct Guard {
    pub pid: i32,
    pub secret: [u8; 4],
    registry: Option<CancelRegistry>,
}

impl Guard {
    /// A session whose server sent no BackendKeyData cannot be cancelled.
    pub fn none() -> Self {
        Self {
            pid: 0,
            secret: [0; 4],
            registry: None,
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(r) = &self.registry {
            r.keys.lock().unwrap().remove(&(self.pid, self.secret));
        }
    }
}

impl CancelRegistry {
    pub fn register(&self, server_pid: i32, server_secret: &[u8], upstream: &Upstream) -> Guard {
        let mut keys = self.keys.lock().unwrap();
        let mut rng = rand::thread_rng();
        loop {
            let pid = (rng.next_u32() & 0x7fff_ffff).max(1) as i32;
            let mut secret = [0u8; 4];
            rng.fill_bytes(&mut secret);
            if let std::collections::hash_map::Entry::Vacant(v) = keys.entry((pid, secret)) {
                v.insert(Entry {
                    server_pid,
                    server_secret: server_secret.to_vec(),
                    upstream: upstream.clone(),
                });
                return Guard {
                    pid,
                    secret,
                    registry: Some(self.clone()),
                };
            }
        }
    }

    pub fn len(&self) -> usize {
        self.keys.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Sends the server's own CancelRequest for the session holding the client's key. An unknown
/// key is dropped silently, as PostgreSQL does (a cancel request gets no answer either way).
pub async fn forward(ctx: &PgContext, pid: i32, secret: &[u8]) -> Result<(), PgError> {
    let Ok(secret) = <[u8; 4]>::try_from(secret) else {
        return Err(PgError::ClientRefused(
            "cancel key of unexpected length".into(),
        ));
    };
    let target = {
        let keys = ctx.cancels.keys.lock().unwrap();
        keys.get(&(pid, secret))
            .map(|e| (e.server_pid, e.server_secret.clone(), e.upstream.clone()))
    };
    let Some((server_pid, server_secret, upstream)) = target else {
        tracing::warn!("cancel request with an unknown key ignored");
        return Ok(());
    };
    let mut server = startup::connect_upstream(&upstream).await?;
    let mut out = BytesMut::new();
    encode_cancel_request(&mut out, server_pid, &server_secret)?;
    io::write_server(&mut server, &out).await?;
    // the server closes the connection once it has read the request
    let mut sink = [0u8; 1];
    let _ = tokio::io::AsyncReadExt::read(&mut server, &mut sink).await;
    tracing::info!("cancel request forwarded");
    Ok(())
}

//! A SCIM-only server (the HTTP stack with only SCIM's routes besides its own), for
//! conformance tools.
//!
//! ```text
//! PORTCULLIS_BOOTSTRAP_TOKEN=<16+ characters> \
//!   cargo run -p portcullis-scim --example scim_server -- [--data DIR] [--listen ADDR]
//! ```
//!
//! Serves `/scim/v2` on ADDR (default `127.0.0.1:8080`) from the store in DIR
//! (default: a temporary directory). When the token does not exist yet it is created
//! with the `scim` role.

use portcullis_engine::Actor;
use std::sync::Arc;

use portcullis_engine::{Engine, TokenSpec};
use portcullis_http::{AppState, Settings};
use portcullis_scim::{ScimSettings, routes};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut data = None;
    let mut listen = "127.0.0.1:8080".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--data" => data = args.next(),
            "--listen" => listen = args.next().ok_or("--listen needs an address")?,
            other => return Err(format!("unknown argument `{other}`").into()),
        }
    }
    let secret = std::env::var("PORTCULLIS_BOOTSTRAP_TOKEN")
        .map_err(|_| "set PORTCULLIS_BOOTSTRAP_TOKEN to the bearer token clients will use")?;
    let temporary = tempfile::tempdir()?;
    let directory = data.map_or_else(|| temporary.path().to_owned(), Into::into);
    std::fs::create_dir_all(&directory)?;
    let engine = Arc::new(Engine::open(directory.join("portcullis.redb"))?);
    if engine
        .authenticate_token(&secret, portcullis_engine::Time::now())
        .is_none()
    {
        let spec = TokenSpec {
            id: None,
            name: "scim-bootstrap".to_owned(),
            user: None,
            roles: vec!["scim".to_owned()],
            expires_at: None,
            description: "created by the scim_server example".to_owned(),
        };
        engine.create_token_with_secret(&Actor::system("scim_server"), spec, &secret)?;
    }
    let app = portcullis_http::router_with(
        AppState::new(engine, Settings::default()),
        routes(ScimSettings::default()),
    );
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    eprintln!("serving SCIM at http://{}/scim/v2", listener.local_addr()?);
    portcullis_http::serve(listener, app, &Settings::default(), std::future::pending()).await;
    Ok(())
}

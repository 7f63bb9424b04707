//! `link-peeler submit`: one signed `POST /api/links/fetch`, for developers.

use std::process::ExitCode;

use clap::Args;

use link_peeler_wire::api::ApiClient;
use link_peeler_wire::client::RelayError;
use link_peeler_wire::protocol::{FetchOptions, FetchRequest};

#[derive(Debug, Args)]
pub struct SubmitArgs {
    /// Relay base URL, e.g. http://127.0.0.1:8787
    #[arg(long)]
    relay: url::Url,
    /// API key id (lp_live_… or lp_test_…)
    #[arg(long)]
    key: String,
    /// Name of the environment variable that holds the API secret (never pass secrets as flags)
    #[arg(long, value_name = "VAR")]
    secret_env: String,
    /// The tracking URL to resolve
    #[arg(long)]
    url: String,
    /// Idempotency key for this logical job
    #[arg(long)]
    idempotency_key: String,
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    row_id: Option<String>,
    /// Per-job hop limit (1–100)
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_hops: Option<u32>,
}

pub fn run(args: SubmitArgs) -> ExitCode {
    match submit(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("link-peeler submit: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn submit(args: SubmitArgs) -> anyhow::Result<ExitCode> {
    let secret = std::env::var(&args.secret_env).map_err(|_| {
        anyhow::anyhow!(
            "environment variable {} is not set (it must hold the API secret)",
            args.secret_env
        )
    })?;
    let request = FetchRequest {
        idempotency_key: args.idempotency_key,
        tracking_url: args.url,
        source: args.source,
        row_id: args.row_id,
        options: args.max_hops.map(|h| FetchOptions {
            max_hops: Some(h),
            user_agent: None,
        }),
    };
    request.validate()?;
    let api = ApiClient::new(args.relay.as_str(), &args.key, &secret)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match runtime.block_on(api.submit_request(&request)) {
        Ok(submitted) => {
            println!("{}", serde_json::to_string(&submitted.job)?);
            if submitted.replayed {
                eprintln!("(idempotent replay: the job already existed)");
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e @ RelayError::Api { .. }) => {
            eprintln!("link-peeler submit: relay refused: {e}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(e.into()),
    }
}

//! `link-peeler submit`: one signed `POST /api/links/fetch`, for developers.

use std::process::ExitCode;

use clap::Args;

use link_peeler_wire::protocol::{
    ErrorBody, FetchOptions, FetchRequest, HEADER_IDEMPOTENT_REPLAYED, Job, paths,
};
use link_peeler_wire::signing::Signer;

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
    let body = serde_json::to_vec(&request)?;
    let endpoint = args.relay.join(paths::LINKS_FETCH)?;
    let signer = Signer::new(args.key, secret.into_bytes());

    link_peeler_wire::tls::init();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        let mut req = client
            .post(endpoint)
            .header("content-type", "application/json");
        for (name, value) in signer.headers(&body) {
            req = req.header(name, value);
        }
        let resp = req.body(body).send().await?;
        let status = resp.status();
        let replayed = resp.headers().contains_key(HEADER_IDEMPOTENT_REPLAYED);
        let text = resp.text().await?;
        if status.is_success() {
            let job: Job = serde_json::from_str(&text).map_err(|e| {
                anyhow::anyhow!("relay answered {status} with an unexpected body: {e}")
            })?;
            println!("{}", serde_json::to_string(&job)?);
            if replayed {
                eprintln!("(idempotent replay: the job already existed)");
            }
            Ok(ExitCode::SUCCESS)
        } else {
            match serde_json::from_str::<ErrorBody>(&text) {
                Ok(err) => eprintln!(
                    "link-peeler submit: relay refused ({status}): {}",
                    err.error
                ),
                Err(_) => eprintln!("link-peeler submit: relay answered {status}: {text}"),
            }
            Ok(ExitCode::from(1))
        }
    })
}

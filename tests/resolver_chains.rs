//! Lab scenarios: chains, redirect kinds, Location handling, loops, cookies.
//! Every request goes to a lab server on 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a test or benchmark: a panic is a failure report

mod lab;

use std::sync::Arc;

use lab::{Lab, Reply, assert_conclusion, enc, lab_resolver, resolve, resolver_with, shape};
use link_peeler_wire::protocol::{Conclusion, RedirectKind};

use RedirectKind::{Javascript, Location, MetaRefresh, RefreshHeader};

#[tokio::test]
async fn a_plain_page_resolves_in_one_hop() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/ok")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(r.redirect_count, 0);
    assert_eq!(r.final_status, Some(200));
    assert_eq!(r.final_url, lab.url("/ok"));
    assert_eq!(r.hops.len(), 1);
    assert_eq!(
        r.hops[0].remote_addr.as_deref(),
        Some(lab.addr.to_string().as_str())
    );
    assert_eq!(r.error, None);
}

#[tokio::test]
async fn every_hop_is_recorded_with_absolute_next_url() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/chain/3")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(r.redirect_count, 3);
    assert_eq!(r.hops.len(), 4);
    for (i, hop) in r.hops.iter().enumerate().take(3) {
        assert_eq!(hop.url, lab.url(&format!("/chain/{}", 3 - i)));
        assert_eq!(hop.status, Some(302));
        assert_eq!(hop.redirect_kind, Some(Location));
        assert_eq!(
            hop.location.as_deref(),
            Some(lab.url(&format!("/chain/{}", 2 - i)).as_str())
        );
        assert!(hop.remote_addr.is_some());
    }
    assert_eq!(r.hops[3].location, None);
    assert_eq!(r.final_url, lab.url("/chain/0"));
    assert_eq!(
        lab.paths(),
        ["/chain/3", "/chain/2", "/chain/1", "/chain/0"]
    );
}

#[tokio::test]
async fn a_chain_at_the_limit_resolves() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/chain/20")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(r.redirect_count, 20);
    assert_eq!(r.hops.len(), 21);
}

#[tokio::test]
async fn a_chain_beyond_the_limit_is_too_many_redirects() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/chain/21")).await;
    assert_conclusion(&r, Conclusion::TooManyRedirects);
    assert_eq!(r.redirect_count, 20);
    assert_eq!(r.hops.len(), 21);
    // The 22nd request was never made.
    assert_eq!(lab.requests().len(), 21);
    assert_eq!(r.final_url, lab.url("/chain/1"));
    assert!(r.error.as_deref().unwrap_or("").contains("20"));
}

#[tokio::test]
async fn per_call_hop_limits_apply() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = lab_resolver();
    let r = resolver
        .resolve_with(&lab.url("/chain/3"), Some(2), None)
        .await;
    assert_conclusion(&r, Conclusion::TooManyRedirects);
    assert_eq!(r.hops.len(), 3);
    let r = resolver
        .resolve_with(&lab.url("/chain/3"), Some(3), None)
        .await;
    assert_conclusion(&r, Conclusion::Resolved);
    let limited = resolver_with(|c| c.max_hops = 1);
    let r = resolve(&limited, &lab.url("/chain/2")).await;
    assert_conclusion(&r, Conclusion::TooManyRedirects);
}

#[tokio::test]
async fn every_redirect_status_is_followed() {
    let lab = Lab::start("127.0.0.1").await;
    for code in [301, 302, 303, 307, 308] {
        let r = resolve(&lab_resolver(), &lab.url(&format!("/status/{code}?to=/ok"))).await;
        assert_conclusion(&r, Conclusion::Resolved);
        assert_eq!(
            shape(&r),
            vec![(Some(code), Some(Location)), (Some(200), None)],
            "{code}"
        );
    }
}

#[tokio::test]
async fn statuses_that_are_not_redirects_end_the_chain_despite_a_location() {
    let lab = Lab::start("127.0.0.1").await;
    for (code, want) in [
        (201, Conclusion::Resolved),
        (300, Conclusion::HttpError),
        (304, Conclusion::HttpError),
        (305, Conclusion::HttpError),
    ] {
        let r = resolve(&lab_resolver(), &lab.url(&format!("/status/{code}?to=/ok"))).await;
        assert_conclusion(&r, want);
        assert_eq!(shape(&r), vec![(Some(code), None)], "{code}");
    }
    assert!(!lab.paths().contains(&"/ok".to_string()));
}

#[tokio::test]
async fn error_statuses_end_as_http_error_with_hops_kept() {
    let lab = Lab::start("127.0.0.1").await;
    for code in [400, 403, 404, 410, 429, 500, 502, 503] {
        let url = lab.url(&format!(
            "/status/302?to={}",
            enc(format!("/status/{code}").as_bytes())
        ));
        let r = resolve(&lab_resolver(), &url).await;
        assert_conclusion(&r, Conclusion::HttpError);
        assert_eq!(r.final_status, Some(code));
        assert_eq!(
            shape(&r),
            vec![(Some(302), Some(Location)), (Some(code), None)]
        );
        assert_eq!(r.error, None);
    }
}

#[tokio::test]
async fn a_redirect_without_location_ends_there() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/status/302")).await;
    assert_conclusion(&r, Conclusion::HttpError);
    assert_eq!(shape(&r), vec![(Some(302), None)]);
    assert!(r.error.as_deref().unwrap_or("").contains("302"));
}

#[tokio::test]
async fn empty_and_duplicate_locations_are_handled_without_a_hang() {
    let lab = Lab::with(
        "127.0.0.1",
        Arc::new(|req: &lab::Req| match req.path() {
            "/empty" => Reply::redirect(302, ""),
            "/empty-then-real" => Reply::redirect(302, "").with_header("Location", "/ok"),
            "/same-twice" => Reply::redirect(302, "/ok").with_header("Location", "/ok"),
            "/different" => Reply::redirect(302, "/ok").with_header("Location", "/other"),
            _ => lab::standard(req),
        }),
    )
    .await;
    let resolver = lab_resolver();
    let r = resolve(&resolver, &lab.url("/empty")).await;
    assert_conclusion(&r, Conclusion::HttpError);
    assert_eq!(shape(&r), vec![(Some(302), None)]);
    let r = resolve(&resolver, &lab.url("/empty-then-real")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(r.final_url, lab.url("/ok"));
    let r = resolve(&resolver, &lab.url("/same-twice")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    let r = resolve(&resolver, &lab.url("/different")).await;
    assert_conclusion(&r, Conclusion::ProtocolError);
    assert_eq!(r.hops.len(), 1);
    assert_eq!(r.hops[0].status, Some(302));
}

#[tokio::test]
async fn relative_scheme_relative_and_backslash_locations() {
    let lab = Lab::start("127.0.0.1").await;
    let port = lab.addr.port();
    let resolver = lab_resolver();
    for (location, landing) in [
        ("ok".to_string(), "/status/ok"),
        ("../ok".to_string(), "/ok"),
        ("/ok".to_string(), "/ok"),
        (format!("//127.0.0.1:{port}/ok"), "/ok"),
        (format!("/\\127.0.0.1:{port}/ok"), "/ok"),
        (format!("\\\\127.0.0.1:{port}\\ok"), "/ok"),
        ("  /ok  ".to_string(), "/ok"),
        ("/o\tk".to_string(), "/ok"),
    ] {
        let url = lab.url(&format!("/status/302?to={}", enc(location.as_bytes())));
        let r = resolve(&resolver, &url).await;
        assert_eq!(r.final_url, lab.url(landing), "Location {location:?}");
        assert_eq!(
            r.hops[0].location.as_deref(),
            Some(lab.url(landing).as_str())
        );
    }
}

#[tokio::test]
async fn raw_non_ascii_and_space_bytes_in_location_are_percent_encoded() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = lab_resolver();
    for (raw, want) in [
        (
            "/caf\u{e9}?q=\u{fc}".as_bytes().to_vec(),
            "/caf%C3%A9?q=%C3%BC",
        ),
        (b"/caf\xe9".to_vec(), "/caf%E9"),
        (b"/a b?c d".to_vec(), "/a%20b?c%20d"),
    ] {
        let r = resolve(
            &resolver,
            &lab.url(&format!("/status/302?to={}", enc(&raw))),
        )
        .await;
        assert_eq!(r.hops[0].location.as_deref(), Some(lab.url(want).as_str()));
        assert_eq!(lab.paths().last().map(String::as_str), Some(want));
    }
}

#[tokio::test]
async fn fragments_are_inherited_through_location_redirects() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = lab_resolver();
    let r = resolve(&resolver, &(lab.url("/chain/2") + "#section")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(r.final_url, lab.url("/chain/0#section"));
    assert_eq!(
        r.hops[0].location.as_deref(),
        Some(lab.url("/chain/1#section").as_str())
    );
    // A Location with its own fragment replaces it.
    let url = lab.url(&format!("/status/302?to={}#old", enc(b"/ok#new")));
    let r = resolve(&resolver, &url).await;
    assert_eq!(r.final_url, lab.url("/ok#new"));
    // Fragments are never sent.
    assert!(lab.paths().iter().all(|p| !p.contains('#')));
}

#[tokio::test]
async fn non_http_targets_are_unsupported_scheme() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = lab_resolver();
    for target in [
        "javascript:alert(1)",
        "data:text/html,hi",
        "file:///etc/passwd",
        "ftp://example.com/x",
        "myapp://open/item/42",
    ] {
        let r = resolve(
            &resolver,
            &lab.url(&format!("/status/302?to={}", enc(target.as_bytes()))),
        )
        .await;
        assert_conclusion(&r, Conclusion::UnsupportedScheme);
        assert_eq!(r.hops.len(), 1);
        assert_eq!(r.hops[0].redirect_kind, Some(Location));
        assert!(
            r.hops[0]
                .location
                .as_deref()
                .unwrap_or("")
                .starts_with(target.split(':').next().unwrap_or(""))
        );
        assert_eq!(r.final_url, r.hops[0].url);
    }
}

#[tokio::test]
async fn meta_refresh_is_followed_without_waiting() {
    let lab = Lab::start("127.0.0.1").await;
    let url = lab.url(&format!("/meta?c={}", enc(b"5; url=/ok")));
    let r = resolve(&lab_resolver(), &url).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(
        shape(&r),
        vec![(Some(200), Some(MetaRefresh)), (Some(200), None)]
    );
    assert_eq!(r.hops[0].location.as_deref(), Some(lab.url("/ok").as_str()));
}

#[tokio::test]
async fn long_meta_refreshes_and_reloads_are_landings() {
    let lab = Lab::start("127.0.0.1").await;
    for content in ["11; url=/ok", "300; url=/ok", "0", "garbage; url=/ok"] {
        let r = resolve(
            &lab_resolver(),
            &lab.url(&format!("/meta?c={}", enc(content.as_bytes()))),
        )
        .await;
        assert_conclusion(&r, Conclusion::Resolved);
        assert_eq!(shape(&r), vec![(Some(200), None)], "{content}");
    }
}

#[tokio::test]
async fn meta_refresh_honours_base_href() {
    let lab = Lab::with(
        "127.0.0.1",
        Arc::new(|req: &lab::Req| match req.path() {
            "/based" => Reply::html(
                200,
                "<html><head><base href=\"/status/\"><meta http-equiv=refresh content=\"0;URL='ok'\"></head></html>",
            ),
            _ => lab::standard(req),
        }),
    )
    .await;
    let r = resolve(&lab_resolver(), &lab.url("/based")).await;
    assert_eq!(
        r.hops[0].location.as_deref(),
        Some(lab.url("/status/ok").as_str())
    );
}

#[tokio::test]
async fn refresh_header_is_followed() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(
        &lab_resolver(),
        &lab.url(&format!("/refresh?v={}", enc(b"0;url=/ok"))),
    )
    .await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(
        shape(&r),
        vec![(Some(200), Some(RefreshHeader)), (Some(200), None)]
    );
}

#[tokio::test]
async fn javascript_redirects_are_followed_computed_ones_too_and_click_handlers_are_not() {
    let lab = Lab::with(
        "127.0.0.1",
        Arc::new(|req: &lab::Req| match req.path() {
            "/obfuscated" => Reply::html(
                200,
                "<script>var p=['o','k'];window['loc'+'ation'].href='/'+p.join('');</script>",
            ),
            "/handler" => Reply::html(
                200,
                "<button id=b>go</button><script>document.getElementById('b').addEventListener('click', function(){ location.href='/ok' })</script>",
            ),
            "/tco" => Reply::html(
                200,
                "<noscript><META http-equiv=\"refresh\" content=\"0;URL=/status/200\"></noscript><script>window.opener = null; location.replace(\"\\/ok\")</script>",
            ),
            _ => lab::standard(req),
        }),
    )
    .await;
    let resolver = lab_resolver();
    let r = resolve(&resolver, &lab.url("/js?to=/ok")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(
        shape(&r),
        vec![(Some(200), Some(Javascript)), (Some(200), None)]
    );
    let r = resolve(&resolver, &lab.url("/tco")).await;
    assert_eq!(
        shape(&r),
        vec![(Some(200), Some(Javascript)), (Some(200), None)]
    );
    assert_eq!(r.final_url, lab.url("/ok"));
    // Computed URLs are followed since the page's scripts run in the sandbox
    // (protocol.md §5.7); a click handler still never runs.
    let r = resolve(&resolver, &lab.url("/obfuscated")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(
        shape(&r),
        vec![(Some(200), Some(Javascript)), (Some(200), None)]
    );
    assert_eq!(r.final_url, lab.url("/ok"));
    let r = resolve(&resolver, &lab.url("/handler")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(shape(&r), vec![(Some(200), None)], "/handler");
}

#[tokio::test]
async fn location_wins_over_the_body_and_kinds_mix_in_one_chain() {
    let lab = Lab::with(
        "127.0.0.1",
        Arc::new(|req: &lab::Req| match req.path() {
            "/start" => Reply::redirect(301, "/loc-with-body"),
            "/loc-with-body" => Reply::Full {
                status: 302,
                headers: vec![
                    ("Location".into(), b"/to-refresh".to_vec()),
                    ("Content-Type".into(), b"text/html".to_vec()),
                ],
                body: lab::meta_page("0;url=/wrong").into_bytes(),
            },
            "/to-refresh" => Reply::html(200, "<p>x</p>").with_header("Refresh", "0; url=/to-meta"),
            "/to-meta" => Reply::html(200, lab::meta_page("1;url=/to-js")),
            "/to-js" => Reply::html(200, "<script>location.href = '/ok';</script>"),
            _ => lab::standard(req),
        }),
    )
    .await;
    let r = resolve(&lab_resolver(), &lab.url("/start")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(
        shape(&r),
        vec![
            (Some(301), Some(Location)),
            (Some(302), Some(Location)),
            (Some(200), Some(RefreshHeader)),
            (Some(200), Some(MetaRefresh)),
            (Some(200), Some(Javascript)),
            (Some(200), None),
        ]
    );
    assert!(!lab.paths().contains(&"/wrong".to_string()));
}

#[tokio::test]
async fn a_self_redirect_is_a_loop_at_once() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/self")).await;
    assert_conclusion(&r, Conclusion::RedirectLoop);
    assert_eq!(r.hops.len(), 1);
    assert_eq!(lab.requests().len(), 1);
    assert_eq!(
        r.hops[0].location.as_deref(),
        Some(lab.url("/self").as_str())
    );
}

#[tokio::test]
async fn a_two_step_cycle_is_a_loop() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/a")).await;
    assert_conclusion(&r, Conclusion::RedirectLoop);
    assert_eq!(lab.paths(), ["/a", "/b"]);
    assert_eq!(r.redirect_count, 1);
    assert_eq!(r.final_url, lab.url("/b"));
}

#[tokio::test]
async fn a_meta_refresh_to_itself_is_a_loop() {
    let lab = Lab::start("127.0.0.1").await;
    let content = enc(b"0; url=");
    let url = lab.url(&format!("/meta?c={content}"));
    // url= with nothing after it is the document itself.
    let r = resolve(&lab_resolver(), &url).await;
    assert_conclusion(&r, Conclusion::RedirectLoop);
    assert_eq!(lab.requests().len(), 1);
}

#[tokio::test]
async fn a_query_varying_soft_loop_hits_the_limit() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/soft?n=0")).await;
    assert_conclusion(&r, Conclusion::TooManyRedirects);
    assert_eq!(r.hops.len(), 21);
}

#[tokio::test]
async fn a_cookie_setting_self_redirect_is_followed() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/gate")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert_eq!(
        shape(&r),
        vec![(Some(302), Some(Location)), (Some(200), None)]
    );
    let reqs = lab.requests();
    assert_eq!(reqs[0].header("cookie"), None);
    assert_eq!(reqs[1].cookie("gate").as_deref(), Some("1"));
}

#[tokio::test]
async fn cookies_travel_across_hosts_only_where_they_belong() {
    // A cookie set on 127.0.0.1 is sent back there, through an intermediate hop.
    let lab = Lab::with(
        "127.0.0.1",
        Arc::new(|req: &lab::Req| match req.path() {
            "/set" => Reply::redirect(302, "/check").with_header("Set-Cookie", "sid=abc; Path=/"),
            "/check" if req.cookie("sid").as_deref() == Some("abc") => Reply::html(200, "ok"),
            "/check" => Reply::html(401, "no cookie"),
            _ => lab::standard(req),
        }),
    )
    .await;
    let r = resolve(&lab_resolver(), &lab.url("/set")).await;
    assert_conclusion(&r, Conclusion::Resolved);
}

#[tokio::test]
async fn concurrent_resolutions_of_one_url_do_not_share_cookies() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = lab_resolver();
    let url = lab.url("/gate");
    let runs = (0..24).map(|_| {
        let r = resolver.clone();
        let u = url.clone();
        tokio::spawn(async move { r.resolve(&u).await })
    });
    for run in futures_util::future::join_all(runs).await {
        let r = run.expect("task");
        // Each resolution met the gate without a cookie: its jar is its own.
        assert_eq!(
            shape(&r),
            vec![(Some(302), Some(Location)), (Some(200), None)]
        );
    }
    let first_visits = lab
        .requests()
        .iter()
        .filter(|q| q.header("cookie").is_none())
        .count();
    assert_eq!(first_visits, 24);
    // And each used its own connections.
    assert!(lab.connections() >= 24);
}

#[tokio::test]
async fn requests_look_like_a_browser_and_carry_no_referer() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/status/302?to=/ua")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    for req in lab.requests() {
        assert_eq!(req.method, "GET");
        assert!(
            req.header("user-agent")
                .unwrap_or("")
                .starts_with("Mozilla/5.0")
        );
        assert!(req.header("accept").unwrap_or("").contains("text/html"));
        assert_eq!(req.header("referer"), None);
    }
}

#[tokio::test]
async fn the_user_agent_changes_the_chain() {
    let lab = Lab::start("127.0.0.1").await;
    let resolver = lab_resolver();
    let r = resolver
        .resolve_with(&lab.url("/ua"), None, Some("curl/8.0"))
        .await;
    assert_conclusion(&r, Conclusion::HttpError);
    assert_eq!(r.final_status, Some(403));
    let bot = resolver_with(|c| c.user_agent = "link-checker/1.0".into());
    let r = resolve(&bot, &lab.url("/ua")).await;
    assert_eq!(r.final_status, Some(403));
    let r = resolve(&resolver, &lab.url("/ua")).await;
    assert_eq!(r.final_status, Some(200));
    let r = resolver
        .resolve_with(&lab.url("/ua"), None, Some("bad\nagent"))
        .await;
    assert_conclusion(&r, Conclusion::ProtocolError);
}

#[tokio::test]
async fn a_server_that_refuses_head_is_fine_because_we_get() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(&lab_resolver(), &lab.url("/head405")).await;
    assert_conclusion(&r, Conclusion::Resolved);
    assert!(lab.requests().iter().all(|q| q.method == "GET"));
}

#[tokio::test]
async fn invalid_and_unsupported_inputs_are_conclusions() {
    let resolver = lab_resolver();
    for (input, want) in [
        ("not a url", Conclusion::InvalidUrl),
        ("", Conclusion::InvalidUrl),
        ("http://", Conclusion::InvalidUrl),
        ("http://exa mple.com/", Conclusion::InvalidUrl),
        ("ftp://example.com/", Conclusion::UnsupportedScheme),
        ("javascript:alert(1)", Conclusion::UnsupportedScheme),
        ("mailto:a@example.com", Conclusion::UnsupportedScheme),
    ] {
        let r = resolve(&resolver, input).await;
        assert_conclusion(&r, want);
        assert!(r.hops.is_empty(), "{input}");
        assert_eq!(r.input_url, input);
        assert!(r.error.is_some());
    }
}

#[tokio::test]
async fn an_unparsable_location_is_invalid_url_with_the_hop_kept() {
    let lab = Lab::start("127.0.0.1").await;
    let r = resolve(
        &lab_resolver(),
        &lab.url(&format!("/status/302?to={}", enc(b"http://[::1"))),
    )
    .await;
    assert_conclusion(&r, Conclusion::InvalidUrl);
    assert_eq!(shape(&r), vec![(Some(302), Some(Location))]);
}

//! Native dialogs: enrollment input, messages, "already running".
//!
//! All go through `rustydialogs`, which draws with the platform's own
//! toolkit — GTK 3 on Linux (the library the tray already loads, so no
//! `zenity` or `kdialog` must be installed), AppKit on macOS, Win32 on
//! Windows — and is the one maintained crate that offers a text-input
//! dialog on all three. Dialogs are modal and must run on the UI (main)
//! thread; the tray's event loop keeps serving the menu meanwhile.
//!
//! Window titles are stable: the GUI smoke test finds dialogs by title.

use rustydialogs::{MessageBox, MessageButtons, MessageIcon, TextInput, TextInputMode};
use url::Url;

use super::enroll_input::{self, FirstAnswer};

pub const TITLE_ENROLL: &str = "Enroll this computer";
pub const TITLE_CODE: &str = "Enrollment code";
pub const TITLE_ENROLLED: &str = "Link Peeler enrolled";
pub const TITLE_ENROLL_FAILED: &str = "Enrollment failed";
pub const TITLE_ALREADY_RUNNING: &str = "Link Peeler is already running";
pub const TITLE_ABOUT: &str = "About Link Peeler";
pub const TITLE_ERROR: &str = "Link Peeler";
// (No regex characters: the GUI test finds windows by an anchored regex.)
pub const TITLE_CONSENT: &str = "Allow Link Peeler to use this connection";
pub const TITLE_WELCOME: &str = "Link Peeler is set up by your organization";

/// What the agent does, in plain words: asked on first start (or, when an
/// organisation agreed for its users, told).
pub fn consent_text(relay: &str) -> String {
    format!(
        "Link Peeler opens web links on this computer for your team, through {relay}.\n\n\
         • It uses this computer's internet connection and IP address: the websites \
         behind the links see this computer.\n\
         • It downloads the pages a link passes through (limits per hour, day and month \
         apply), and stops on metered networks and on battery.\n\
         • It never opens your own files, browser or accounts.\n\
         • Pause is always one click away in the tray menu; \"Recent activity…\" \
         shows what it did.\n"
    )
}

/// Asks for consent; true only on an explicit Yes.
pub fn ask_consent(relay: &str) -> bool {
    let text = format!(
        "{}\nAllow Link Peeler to start working?",
        consent_text(relay)
    );
    let answer = MessageBox {
        title: TITLE_CONSENT,
        message: &text,
        icon: MessageIcon::Question,
        buttons: MessageButtons::YesNo,
        owner: None,
    }
    .show();
    answer == Some(rustydialogs::MessageResult::Yes)
}

fn message(title: &str, text: &str, icon: MessageIcon) {
    MessageBox {
        title,
        message: text,
        icon,
        buttons: MessageButtons::Ok,
        owner: None,
    }
    .show();
}

/// An information box with an OK button.
pub fn info(title: &str, text: &str) {
    message(title, text, MessageIcon::Info);
}

/// An error box with an OK button.
pub fn error(title: &str, text: &str) {
    message(title, text, MessageIcon::Error);
}

fn ask(title: &str, prompt: &str, value: &str) -> Option<String> {
    TextInput {
        title,
        message: prompt,
        value,
        mode: TextInputMode::SingleLine,
        owner: None,
    }
    .show()
}

/// Asks for an enrollment link, or a relay address and then a code.
/// `None` when the user cancels. Mistakes are explained and asked again.
pub fn ask_enrollment(default_relay: Option<&str>) -> Option<(Url, String)> {
    let mut value = default_relay.unwrap_or_default().to_owned();
    loop {
        let answer = ask(
            TITLE_ENROLL,
            "Paste the enrollment link your admin sent (link-peeler://enroll?…),\nor type the relay address (https://…):",
            &value,
        )?;
        match enroll_input::parse_first(&answer) {
            Ok(FirstAnswer::Link { relay, code }) => return Some((relay, code)),
            Ok(FirstAnswer::Relay(relay)) => return ask_code(relay),
            Err(why) => {
                error(TITLE_ENROLL, &why);
                value = answer;
            }
        }
    }
}

fn ask_code(relay: Url) -> Option<(Url, String)> {
    let prompt = format!("Type the one-time enrollment code your admin sent for\n{relay}");
    loop {
        let answer = ask(TITLE_CODE, &prompt, "")?;
        match enroll_input::code(&answer) {
            Ok(code) => return Some((relay, code)),
            Err(why) => error(TITLE_CODE, &why),
        }
    }
}

/// Tells a second launch that the app is already running.
pub fn already_running(pid: Option<u32>) {
    let who = pid.map(|p| format!(" (process {p})")).unwrap_or_default();
    info(
        TITLE_ALREADY_RUNNING,
        &format!(
            "Link Peeler is already running for this user{who}.\nLook for its icon next to the clock."
        ),
    );
}

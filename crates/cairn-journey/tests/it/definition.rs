use cairn_journey::definition::{Reentry, StepKind};
use cairn_journey::{DefinitionError, Journey};

pub const ABANDONED_CART: &str = include_str!("../../../../examples/journeys/abandoned-cart.yaml");

#[test]
fn the_reference_journey_parses() {
    let j = Journey::from_yaml(ABANDONED_CART).unwrap();
    assert_eq!(j.versioned_id(), "abandoned-cart@1");
    assert_eq!(j.entry.reentry, Reentry::WhenExited);
    assert_eq!(j.goal.as_ref().unwrap().within, 7 * 86_400_000_000);
    assert_eq!(j.frequency_cap.unwrap().messages, 2);
    assert_eq!(j.holdout_range(), Some(0..1000));
    let email = &j.steps[j.step_index("email").unwrap()];
    let StepKind::Send { quiet_hours, .. } = &email.kind else {
        panic!("email is a send step")
    };
    assert_eq!(quiet_hours.unwrap().start, 21 * 60);
    assert_eq!(quiet_hours.unwrap().end, 8 * 60);
}

fn check(yaml: &str, line: u64, column: u64, reason_has: &str) {
    let err: DefinitionError = Journey::from_yaml(yaml).unwrap_err();
    assert_eq!((err.line, err.column), (line, column), "{err}");
    assert!(err.reason.contains(reason_has), "{err}");
}

const HEAD: &str = "id: j\nversion: 1\nentry:\n  event: a\nsteps:\n";

#[test]
fn errors_say_line_column_and_why() {
    // Unknown step reference: points at the reference.
    check(
        &format!("{HEAD}  - id: w\n    wait:\n      duration: 1h\n    next: nowhere\n"),
        9,
        11,
        "no step with id \"nowhere\"",
    );
    // A wait until a time of day exits by `next`, and the time is HH:MM.
    check(
        &format!(
            "{HEAD}  - id: w\n    wait:\n      until: \"09:00\"\n      timeout: 1h\n    next: w\n"
        ),
        8,
        14,
        "use `next`",
    );
    check(
        &format!("{HEAD}  - id: w\n    wait:\n      until: \"9am\"\n    next: w\n"),
        8,
        14,
        "bad time of day \"9am\"",
    );
    // Bad duration.
    check(
        &format!("{HEAD}  - id: w\n    wait:\n      duration: soon\n    next: w\n"),
        8,
        17,
        "bad duration \"soon\"",
    );
    // Split percentages.
    check(
        &format!(
            "{HEAD}  - id: s\n    split:\n      - arm: a\n        percent: 50\n      - arm: b\n        percent: 40\n    next: x\n  - id: x\n    exit: done\n"
        ),
        8,
        7,
        "add up to 90",
    );
    // Duplicate ids.
    check(
        &format!("{HEAD}  - id: x\n    exit: a\n  - id: x\n    exit: b\n"),
        8,
        9,
        "duplicate step id",
    );
    // A typo in a field name is caught by serde with its location.
    check(&format!("{HEAD}  - id: x\n    exitt: a\n"), 7, 5, "exitt");
    // Unknown channel.
    check(
        &format!(
            "{HEAD}  - id: x\n    send:\n      channel: pigeon\n      template: t\n    next: x\n"
        ),
        8,
        16,
        "pigeon",
    );
}

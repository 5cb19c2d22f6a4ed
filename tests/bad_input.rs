//! Bad input to the todo API on `todo-host`, table-driven over real sockets: each case of
//! `api_cases::bad_requests` gets its documented 4xx with a JSON error that says what was wrong,
//! and leaves the store exactly as it was. `tests/platforms.rs` runs the same table on the other
//! platforms, where some answer first and differently; here nothing may differ.

mod support;

use std::collections::BTreeSet;

use support::Host;
use support::api_cases::bad_requests::{self, CONVENTIONS};

#[test]
fn every_bad_request_gets_its_4xx_with_a_json_reason_and_changes_nothing() -> anyhow::Result<()> {
    let host = Host::start(&["--store", "memory://"])?;
    bad_requests::seed(&host)?;
    let before = bad_requests::snapshot(&host)?;

    let cases = bad_requests::cases();
    assert!(cases.len() >= 30, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let response = bad_requests::send(&host, case)?;
        if let Some(fault) = bad_requests::check(case, &response) {
            failures.push(format!("{}: {fault}", case.name()));
        } else if bad_requests::snapshot(&host)? != before {
            failures.push(format!("{}: the store changed", case.name()));
            break;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    assert_eq!(
        bad_requests::snapshot(&host)?,
        before,
        "the store is unchanged"
    );
    bad_requests::conventions(&host).map_err(|err| anyhow::anyhow!("{CONVENTIONS}: {err:#}"))
}

#[test]
fn every_bad_request_has_a_name_of_its_own() {
    // Platforms record their differences by case name: two cases with one name could not be
    // told apart.
    let cases = bad_requests::cases();
    let names: BTreeSet<String> = cases.iter().map(bad_requests::Case::name).collect();
    assert_eq!(names.len(), cases.len(), "{names:#?}");
}

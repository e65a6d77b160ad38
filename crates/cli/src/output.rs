//! Human and machine output.

use yipan_core::time::ts_text;
use yipan_log::{StoredEvent, VerifyReport};

/// Prints events as JSON lines or a table.
pub fn events(events: &[StoredEvent], json: bool, reveal: bool) {
    if json {
        for e in events {
            println!("{}", e.to_json(reveal));
        }
        return;
    }
    println!(
        "{:<16} {:<24} {:<34} {:<22} {:<8} {:<15} recipients",
        "event", "recorded at", "kind", "", "person", "origin→residence"
    );
    for e in events {
        let env = &e.envelope;
        let (kind, zh) = e.kind().map(|k| (k.name(), k.zh())).unwrap_or(("?", "?"));
        let person = env.person_key.get(..8).unwrap_or("-");
        let rel = if env.origin.is_empty() { "-".to_string() } else { format!("{}→{}", env.origin, env.residence) };
        let recipients: Vec<String> =
            env.recipients.iter().map(|r| format!("{}@{}", r.locality, r.channel_seq)).collect();
        println!(
            "{:<16} {:<24} {:<34} {:<22} {:<8} {:<15} {}",
            format!("{}#{}", env.author, env.author_seq),
            ts_text(env.recorded_at.as_ref()),
            kind,
            zh,
            person,
            rel,
            recipients.join(",")
        );
    }
}

/// Prints a verification report for people.
pub fn verify_report(r: &VerifyReport) {
    println!(
        "locality {}: {} events checked, {} quarantined, {} disclosures in the disclosure log",
        r.locality, r.events, r.quarantined, r.disclosures
    );
    for (author, s) in &r.authors {
        let whose = if *author == r.locality { "own chain" } else { "received" };
        println!("  {author}  {whose:<9}  {} events, seq {}..{}", s.events, s.first_seq, s.last_seq);
    }
    if r.ok() {
        println!("OK: every chain, signature, sequence and channel checks out, and the disclosure log's chain");
    } else {
        println!("FAULTS: {}", r.faults.len());
        for f in &r.faults {
            println!("  {f}");
        }
    }
}

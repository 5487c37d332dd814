//! Assigning contacts to the arms of a split or the variants of an email (SPEC §13).
//!
//! Assignment is a stable hash (SHA-256) of the campaign, the contact's address and the step:
//! the same contact always lands in the same variant, on every run, in every process and in
//! `simulate` (which runs on a throwaway database, so the row id could not serve). Never
//! `DefaultHasher`, whose output may change between Rust releases.
//! With `auto_winner: true`, once the winner is called every later contact gets it.

use nurture_campaign::{Action, Campaign, Step};
use nurture_store::Tx;
use sha2::{Digest, Sha256};

use crate::Result;

/// The choice (by weight) for this contact at this step; `None` when there are no choices.
pub fn assign<'a>(
    campaign: &str,
    email: &str,
    step: &str,
    choices: &[(&'a str, u32)],
) -> Option<&'a str> {
    let total: u64 = choices.iter().map(|(_, w)| u64::from(*w)).sum();
    if total == 0 {
        return None;
    }
    let mut h = Sha256::new();
    h.update(campaign.as_bytes());
    h.update([0]);
    h.update(email.trim().to_lowercase().as_bytes());
    h.update([0]);
    h.update(step.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    let mut bucket = u64::from_be_bytes(first) % total;
    for (id, w) in choices {
        if bucket < u64::from(*w) {
            return Some(id);
        }
        bucket -= u64::from(*w);
    }
    choices.last().map(|(id, _)| *id)
}

/// The variant (or arm) `email` gets at `step`: the called winner of an `auto_winner` test
/// (read once per batch), else its stable [`assign`]ment. `None` for a step without choices.
pub(crate) async fn choose(
    tx: &mut Tx,
    w: &mut crate::writes::Writes,
    c: &Campaign,
    step: &Step,
    email: &str,
) -> Result<Option<String>> {
    let choices = step.choices();
    if choices.is_empty() {
        return Ok(None);
    }
    if step.test.is_some_and(|t| t.auto_winner) {
        let key = (c.id.to_string(), step.id.to_string());
        let winner = match w.winners.get(&key) {
            Some(found) => found.clone(),
            None => {
                let found = auto_winner(tx, c.id.as_str(), step).await?;
                w.winners.insert(key, found.clone());
                found
            }
        };
        if let Some(id) = winner
            && choices.iter().any(|(c, _)| *c == id)
        {
            return Ok(Some(id));
        }
    }
    Ok(assign(c.id.as_str(), email, step.id.as_str(), &choices).map(str::to_string))
}

/// The winner of a step's test if it has `auto_winner: true` and the winner is called.
pub(crate) async fn auto_winner(
    tx: &mut Tx,
    campaign: &str,
    step: &Step,
) -> Result<Option<String>> {
    let Some(test) = step.test.filter(|t| t.auto_winner) else {
        return Ok(None);
    };
    let counts = match &step.action {
        Action::Split(_) => tx.split_arm_counts(campaign, step.id.as_str()).await?,
        Action::Send(_) => tx.email_variant_counts(campaign, step.id.as_str()).await?,
        _ => return Ok(None),
    };
    let ids: Vec<&str> = step.choices().into_iter().map(|(id, _)| id).collect();
    Ok(crate::winner::call(&ids, &counts, &test).map(|w| w.id))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn assignment_is_stable_and_follows_the_weights() {
        let even = [("a", 50), ("b", 50)];
        // Fixed forever: a change here would move running tests' contacts.
        let first = assign("onboarding", "ana@example.com", "subject-test", &even).unwrap();
        for _ in 0..3 {
            assert_eq!(
                assign("onboarding", "Ana@Example.com ", "subject-test", &even),
                Some(first)
            );
        }
        let mut a = 0;
        for i in 0..10_000 {
            if assign("c", &format!("lead{i}@example.com"), "s", &even) == Some("a") {
                a += 1;
            }
        }
        assert!((4_700..5_300).contains(&a), "{a} of 10000 in a");
        let skewed = [("a", 10), ("b", 90)];
        let mut a = 0;
        for i in 0..10_000 {
            if assign("c", &format!("lead{i}@example.com"), "s", &skewed) == Some("a") {
                a += 1;
            }
        }
        assert!((800..1_200).contains(&a), "{a} of 10000 in a");
        assert_eq!(assign("c", "x@example.com", "s", &[]), None);
        assert_eq!(
            assign("c", "x@example.com", "s", &[("only", 3)]),
            Some("only")
        );
    }
}

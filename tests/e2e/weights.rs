//! Weighted backends: how a rule's requests are shared between its Services.

use std::collections::BTreeMap;

use weir_e2e::{Weir, World, manifests::route};

/// Sends `requests` GETs and counts who answered each.
async fn tally(weir: &Weir, requests: usize) -> BTreeMap<String, usize> {
    let mut answered_by = BTreeMap::new();
    for _ in 0..requests {
        let who = weir.get("echo.local", "/weighted").await.answered_by();
        *answered_by.entry(who).or_default() += 1;
    }
    answered_by
}

#[tokio::test]
async fn weights_three_to_one_split_requests_75_25_within_five_percent() {
    let world = World::start(
        &["a", "b"],
        [route("weighted")
            .host("echo.local")
            .prefix("/weighted")
            .weighted_backend("a", 3)
            .weighted_backend("b", 1)],
    )
    .await;
    let answered_by = tally(&world.weir, 1000).await;
    let share = |name: &str| answered_by.get(name).copied().unwrap_or_default();
    assert_eq!(
        share("a") + share("b"),
        1000,
        "only a and b answer: {answered_by:?}"
    );
    assert!(
        (700..=800).contains(&share("a")),
        "a gets 75% ± 5%: {answered_by:?}"
    );
}

#[tokio::test]
async fn a_backend_of_weight_zero_gets_no_requests() {
    let world = World::start(
        &["a", "b"],
        [route("weighted")
            .host("echo.local")
            .prefix("/weighted")
            .weighted_backend("a", 1)
            .weighted_backend("b", 0)],
    )
    .await;
    assert_eq!(
        tally(&world.weir, 100).await,
        BTreeMap::from([("a".to_owned(), 100)])
    );
}

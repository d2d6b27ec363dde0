//! The benchmarks' statistics (`benches/stats`, shared with `ifpin-cli`'s benchmark), tested
//! here: a benchmark target without the test harness never runs its own tests.

#[path = "../benches/stats/mod.rs"]
mod stats;

use stats::Ratios;

#[test]
fn median_and_interval_of_a_known_set() {
    let r = Ratios::new(vec![3.0, 1.0, 2.0, 5.0, 4.0]);
    assert_eq!(r.median(), 3.0);
    // Five rounds: the interval is the whole range.
    assert_eq!(r.ci95(), (1.0, 5.0));
    let even = Ratios::new(vec![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(even.median(), 2.5);
}

#[test]
fn the_interval_narrows_with_more_rounds() {
    let wide = Ratios::new((0..25).map(f64::from).collect());
    let narrow = Ratios::new((0..2500).map(|i| f64::from(i) / 100.0).collect());
    let width = |r: &Ratios| r.ci95().1 - r.ci95().0;
    assert!(width(&narrow) < width(&wide) / 3.0);
    let (low, high) = narrow.ci95();
    assert!(low <= narrow.median() && narrow.median() <= high);
}

#[test]
#[should_panic(expected = "no rounds")]
fn no_rounds_is_a_bug() {
    Ratios::new(Vec::new());
}

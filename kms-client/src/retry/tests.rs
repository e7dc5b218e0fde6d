use super::*;

const POLICY: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    base: Duration::from_millis(100),
    cap: Duration::from_secs(2),
};

#[test]
fn delay_doubles_between_half_and_full_step() {
    assert_eq!(POLICY.delay(1, None, 0.0), Duration::from_millis(50));
    assert_eq!(POLICY.delay(1, None, 0.5), Duration::from_millis(75));
    assert_eq!(POLICY.delay(3, None, 0.0), Duration::from_millis(200));
}

#[test]
fn delay_is_capped() {
    assert_eq!(POLICY.delay(30, None, 1.0), Duration::from_secs(2));
}

#[test]
fn retry_after_is_honoured_up_to_the_cap() {
    assert_eq!(
        POLICY.delay(1, Some(Duration::from_secs(1)), 0.0),
        Duration::from_secs(1)
    );
    assert_eq!(
        POLICY.delay(1, Some(Duration::from_secs(60)), 0.0),
        Duration::from_secs(2)
    );
}

#[test]
fn jitter_is_in_range() {
    for _ in 0..100 {
        let j = jitter();
        assert!((0.0..1.0).contains(&j));
    }
}

use super::*;

/// Midnight UTC, 2023-11-15.
const MIDNIGHT: u64 = 1_700_006_400;

fn at(hours: u64, minutes: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(MIDNIGHT + hours * 3600 + minutes * 60)
}

fn window(text: &str) -> Window {
    text.parse().expect("valid window")
}

#[test]
fn a_window_parses_and_prints_back() {
    let w = window("02:00-04:30");
    assert_eq!(w, Window::from_minutes(120, 270).expect("valid"));
    assert_eq!(w.to_string(), "02:00-04:30");
}

#[test]
fn malformed_windows_are_refused_with_the_rule_only() {
    for text in [
        "",
        "3:15-4:45",
        "03:15",
        "03:15-",
        "03-04",
        "03:15 - 04:45",
        "0a:15-04:45",
        "03:15-04:45-05:00",
        "０3:15-04:45",
    ] {
        let err = text.parse::<Window>().expect_err(text);
        assert_eq!(err, WindowError::Format, "{text:?}");
        if !text.is_empty() {
            assert!(!err.to_string().contains(text), "{text:?}");
        }
    }
}

#[test]
fn hours_and_minutes_out_of_range_are_refused() {
    for text in ["24:00-02:00", "02:00-24:00", "02:60-03:00", "99:99-00:00"] {
        assert_eq!(
            text.parse::<Window>(),
            Err(WindowError::OutOfRange),
            "{text:?}"
        );
    }
    assert_eq!(Window::from_minutes(1440, 0), Err(WindowError::OutOfRange));
}

#[test]
fn equal_start_and_end_is_refused() {
    assert_eq!("03:00-03:00".parse::<Window>(), Err(WindowError::Empty));
}

#[test]
fn contains_is_half_open_within_a_day() {
    let w = window("02:00-04:00");
    assert!(!w.contains(at(1, 59)));
    assert!(w.contains(at(2, 0)));
    assert!(w.contains(at(3, 59)));
    assert!(!w.contains(at(4, 0)));
    assert!(!w.contains(at(23, 0)));
}

#[test]
fn contains_wraps_past_midnight() {
    let w = window("22:00-02:00");
    assert!(w.contains(at(22, 0)));
    assert!(w.contains(at(23, 59)));
    assert!(w.contains(at(0, 0)));
    assert!(w.contains(at(1, 59)));
    assert!(!w.contains(at(2, 0)));
    assert!(!w.contains(at(12, 0)));
    assert!(!w.contains(at(21, 59)));
}

#[test]
fn next_open_is_now_inside_the_window() {
    let w = window("02:00-04:00");
    let t = at(3, 0) + Duration::from_millis(1500);
    assert_eq!(w.next_open(t), t);
}

#[test]
fn next_open_is_the_exact_opening_later_today_or_tomorrow() {
    let w = window("02:00-04:00");
    assert_eq!(w.next_open(at(1, 0) + Duration::from_millis(250)), at(2, 0));
    assert_eq!(w.next_open(at(4, 0)), at(24 + 2, 0));
    assert_eq!(w.next_open(at(23, 30)), at(24 + 2, 0));
}

#[test]
fn next_open_of_a_wrapping_window_is_the_evening_opening() {
    let w = window("22:00-02:00");
    assert_eq!(w.next_open(at(2, 0)), at(22, 0));
    assert_eq!(w.next_open(at(21, 59)), at(22, 0));
    assert_eq!(w.next_open(at(23, 0)), at(23, 0));
}

#[test]
fn times_before_1970_are_placed_in_their_utc_day() {
    let w = window("23:00-01:00");
    let before_epoch = SystemTime::UNIX_EPOCH - Duration::from_secs(30 * 60);
    assert!(w.contains(before_epoch));
    let noon_before = SystemTime::UNIX_EPOCH - Duration::from_secs(12 * 3600);
    assert_eq!(
        w.next_open(noon_before),
        SystemTime::UNIX_EPOCH - Duration::from_secs(3600)
    );
}

#[test]
fn json_is_the_written_form() {
    let w = window("22:00-02:00");
    let json = serde_json::to_string(&w).expect("serializes");
    assert_eq!(json, "\"22:00-02:00\"");
    assert_eq!(serde_json::from_str::<Window>(&json).expect("parses"), w);
    assert!(serde_json::from_str::<Window>("\"03:00-03:00\"").is_err());
}

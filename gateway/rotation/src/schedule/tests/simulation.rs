//! Two gateways peered with each other, stepped hour by hour over 200 days: each asks
//! [`decide`] every hour and, on `Start`, rotates within that hour (its key is replaced and its
//! creation time becomes that hour).

use super::*;

struct Gateway {
    name: &'static str,
    key: PublicKey,
    created: SystemTime,
    rotating: bool,
    rotations: Vec<SystemTime>,
}

impl Gateway {
    fn new(name: &'static str, first: u8) -> Self {
        Self {
            name,
            key: key(first, name),
            created: t0(),
            rotating: false,
            rotations: Vec::new(),
        }
    }

    fn readiness(&self, schedule: &Schedule, now: SystemTime) -> PeerReadiness {
        PeerReadiness {
            name: self.name.to_owned(),
            public_key: self.key,
            channel: Channel::Up { can_rotate: true },
            tunnel_up: true,
            rotating: self.rotating,
            peer_due: now >= due_at(self.created, schedule, &self.key),
            manual: false,
        }
    }

    /// Asks the scheduler and rotates on `Start`; the new key is derived from the count.
    fn step(&mut self, peer: &Gateway, schedule: &Schedule, now: SystemTime) {
        let input = ScheduleInput {
            own_public_key: self.key,
            key_created: Some(self.created),
            schedule: schedule.clone(),
            rotation_in_flight: self.rotating,
            peers: vec![peer.readiness(schedule, now)],
        };
        let decision = decide(&input, now);
        if decision == Decision::Start {
            self.rotations.push(now);
            let generation = u8::try_from(self.rotations.len()).expect("few rotations");
            // Spread the new keys over the byte range so the tie-break order varies.
            self.key = key(
                self.key.as_bytes()[0]
                    .wrapping_mul(7)
                    .wrapping_add(generation * 91),
                self.name,
            );
            self.created = now;
            self.rotating = true;
        }
    }
}

#[test]
fn two_gateways_rotate_once_per_period_in_the_window_and_never_together() {
    let schedule = Schedule {
        window: Some("22:00-02:00".parse().expect("window")),
        ..Schedule::default()
    };
    let period = schedule.max_age - schedule.lead;
    // Both keys are created at the same instant, so both fall due the same night.
    let mut a = Gateway::new("a", 0x90);
    let mut b = Gateway::new("b", 0x20);
    // Steps fall at half past each hour: the jitter is under 30 minutes, so both keys are due
    // at the same step and only the tie-break keeps them apart.
    let start = t0() + Duration::from_secs(1800);

    for hour in 0..(200 * 24) {
        let now = start + hour * HOUR;
        // Alternate who asks first, so the outcome does not depend on the order.
        if hour % 2 == 0 {
            a.step(&b, &schedule, now);
            b.step(&a, &schedule, now);
        } else {
            b.step(&a, &schedule, now);
            a.step(&b, &schedule, now);
        }
        assert!(
            !(a.rotating && b.rotating),
            "both rotated in the hour at {now:?}"
        );
        a.rotating = false;
        b.rotating = false;
    }

    // The lower key (b) went first; a followed an hour later, when b was no longer due.
    assert_eq!(b.rotations[0], t0() + period + HOUR / 2);
    assert_eq!(a.rotations[0], b.rotations[0] + HOUR);
    for gw in [&a, &b] {
        assert_eq!(gw.rotations.len(), 2, "{}: {:?}", gw.name, gw.rotations);
        let window = schedule.window.expect("window");
        let mut previous = t0();
        for &at in &gw.rotations {
            assert!(
                window.contains(at),
                "{}: rotated outside the window",
                gw.name
            );
            let interval = at.duration_since(previous).expect("later");
            // At least a period; at most a period plus the jitter, the wait for a window
            // (under a day), an hour behind the peer and an hour of step.
            assert!(interval >= period, "{}: {interval:?}", gw.name);
            assert!(
                interval <= period + schedule.jitter + days(1) + 2 * HOUR,
                "{}: {interval:?}",
                gw.name
            );
            previous = at;
        }
    }
}

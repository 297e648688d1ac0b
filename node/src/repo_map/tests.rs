use super::*;

fn id(i: u64) -> RepoId {
    RepoId::parse(&format!("P/r{i}")).expect("id")
}

/// A small deterministic generator (no dependency for one test).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % n
    }
}

const RESULTS: [Option<SyncResult>; 7] = [
    None,
    Some(SyncResult::Ok),
    Some(SyncResult::Failed),
    Some(SyncResult::Unreachable),
    Some(SyncResult::Unauthorized),
    Some(SyncResult::HostKeyChanged),
    Some(SyncResult::NotFound),
];

fn change(e: &mut RepoEntry, r: &mut Lcg) {
    match r.next(5) {
        0 => e.record.last_result = RESULTS[r.next(RESULTS.len() as u64) as usize].clone(),
        1 => e.record.generation = r.next(3),
        2 => e.withheld = (r.next(2) == 0).then_some("behind"),
        3 => e.syncing = !e.syncing,
        _ => {
            e.record.last_success_ms = (r.next(4) > 0).then(|| r.next(50) as i64);
            e.upstream_tried = r.next(2) == 0;
        }
    }
}

#[test]
fn the_tally_always_equals_a_fresh_count() {
    let mut r = Lcg(7);
    let map = RepoMap::new((0..20).map(|i| (id(i), RepoEntry::default())).collect());
    for step in 0..3000 {
        {
            let mut w = map.write();
            match r.next(10) {
                0 => {
                    w.remove(&id(r.next(30)));
                }
                1 => change(w.get_or_default(&id(r.next(30))), &mut r),
                2 => {
                    for (_, e) in w.iter_mut() {
                        if r.next(4) == 0 {
                            change(e, &mut r);
                        }
                    }
                }
                _ => {
                    for _ in 0..=r.next(3) {
                        if let Some(e) = w.get_mut(&id(r.next(30))) {
                            change(e, &mut r);
                        }
                    }
                }
            }
        }
        let (tally, len) = map.with_tally(|t, n| (t.clone(), n));
        let fresh = Tally::of(map.read().values());
        assert_eq!(tally, fresh, "after step {step}");
        assert_eq!(len, map.read().len());
    }
    let (tally, _) = map.with_tally(|t, n| (t.clone(), n));
    assert!(
        tally.servable > 0 && tally.unservable > 0 && tally.last_success().is_some(),
        "the changes covered the cases: {tally:?}"
    );
}

#[test]
fn extremes_follow_entries_that_leave() {
    let entry = |t: i64, result: SyncResult| {
        let mut e = RepoEntry::default();
        e.record.last_success_ms = Some(t);
        e.record.last_result = Some(result);
        e.record.generation = 1;
        e
    };
    let map = RepoMap::new(
        [
            (id(1), entry(100, SyncResult::Unreachable)),
            (id(2), entry(300, SyncResult::Unreachable)),
            (id(3), entry(900, SyncResult::Ok)),
        ]
        .into_iter()
        .collect(),
    );
    let (t, _) = map.with_tally(|t, n| (t.clone(), n));
    assert_eq!(
        (t.oldest_unreached(), t.last_success(), t.unreachable),
        (Some(100), Some(900), 2)
    );
    map.write().remove(&id(3));
    map.write()
        .get_mut(&id(1))
        .expect("entry")
        .record
        .last_result = Some(SyncResult::Ok);
    let (t, len) = map.with_tally(|t, n| (t.clone(), n));
    assert_eq!(
        (t.oldest_unreached(), t.last_success(), t.unreachable, len),
        (Some(300), Some(300), 1, 2)
    );
}

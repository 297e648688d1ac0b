//! The admin page's repository list: filtered by name and state, sorted, paged — thousands of
//! repositories stay one small page.

use mirrorfarm_common::status::RepoStatus;

/// Rows per page.
pub const PAGE_SIZE: usize = 50;

/// How the list is sorted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SortKey {
    /// By `PROJECT/repo`.
    #[default]
    Name,
    /// By state, then name.
    State,
    /// Most recently synced first.
    LastSync,
    /// Highest generation first.
    Generation,
    /// Furthest behind the upstream first.
    Lag,
    /// Largest first.
    Size,
}

impl SortKey {
    /// Its query value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Name => "name",
            Self::State => "state",
            Self::LastSync => "lastSync",
            Self::Generation => "generation",
            Self::Lag => "lag",
            Self::Size => "size",
        }
    }

    /// Every key, for the sort control.
    pub const ALL: [SortKey; 6] = [
        Self::Name,
        Self::State,
        Self::LastSync,
        Self::Generation,
        Self::Lag,
        Self::Size,
    ];
}

/// The page's query: `?q=&state=&sort=&page=`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default)]
pub struct RepoQuery {
    /// Part of `PROJECT/repo` (any case).
    pub q: String,
    /// One state (`SYNCHRONIZED`, …), or all.
    pub state: String,
    /// Sort order.
    pub sort: SortKey,
    /// 1-based page.
    pub page: usize,
    /// The notice to show after an action: `sync` (of `repo`), `sync-all`, `selection`, `file`.
    pub done: String,
    /// The repository a `sync` notice names.
    pub repo: String,
}

/// One page of the list.
#[derive(Debug)]
pub struct RepoPage<'a> {
    /// Its rows.
    pub rows: Vec<&'a RepoStatus>,
    /// Rows matching the filter.
    pub matching: usize,
    /// This page (1-based).
    pub page: usize,
    /// Pages.
    pub pages: usize,
}

/// The page of `repos` the query asks for.
pub fn select<'a>(repos: &'a [RepoStatus], q: &RepoQuery) -> RepoPage<'a> {
    let needle = q.q.trim().to_ascii_lowercase();
    let mut rows: Vec<&RepoStatus> = repos
        .iter()
        .filter(|r| q.state.is_empty() || r.state == q.state)
        .filter(|r| {
            needle.is_empty()
                || format!("{}/{}", r.project, r.repo)
                    .to_ascii_lowercase()
                    .contains(&needle)
        })
        .collect();
    let name = |r: &RepoStatus| (r.project.clone(), r.repo.clone());
    match q.sort {
        SortKey::Name => rows.sort_by_key(|r| name(r)),
        SortKey::State => rows.sort_by_key(|r| (r.state.clone(), name(r))),
        // RFC 3339 in UTC sorts as text; never-synced last.
        SortKey::LastSync => rows.sort_by(|a, b| {
            b.last_sync
                .cmp(&a.last_sync)
                .then_with(|| name(a).cmp(&name(b)))
        }),
        SortKey::Generation => rows.sort_by(|a, b| {
            b.generation
                .cmp(&a.generation)
                .then_with(|| name(a).cmp(&name(b)))
        }),
        SortKey::Lag => {
            rows.sort_by(|a, b| b.lag_ms.cmp(&a.lag_ms).then_with(|| name(a).cmp(&name(b))))
        }
        SortKey::Size => rows.sort_by(|a, b| {
            b.size_bytes
                .cmp(&a.size_bytes)
                .then_with(|| name(a).cmp(&name(b)))
        }),
    }
    let matching = rows.len();
    let pages = matching.div_ceil(PAGE_SIZE).max(1);
    let page = q.page.clamp(1, pages);
    let rows = rows
        .into_iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .collect();
    RepoPage {
        rows,
        matching,
        page,
        pages,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(p: &str, r: &str, state: &str, generation: u64, last: Option<&str>) -> RepoStatus {
        RepoStatus {
            project: p.into(),
            repo: r.into(),
            state: state.into(),
            generation,
            last_sync: last.map(str::to_owned),
            ..Default::default()
        }
    }

    #[test]
    fn filtered_sorted_and_paged() {
        let mut repos: Vec<RepoStatus> = (0..120)
            .map(|i| repo("BIG", &format!("r{i:03}"), "SYNCHRONIZED", i, None))
            .collect();
        repos.push(repo("APP", "web", "ERROR", 3, Some("2026-12-01T10:00:00Z")));
        repos.push(repo(
            "APP",
            "api",
            "SYNCHRONIZED",
            7,
            Some("2026-12-01T11:00:00Z"),
        ));
        let all = select(&repos, &RepoQuery::default());
        assert_eq!((all.matching, all.pages, all.page), (122, 3, 1));
        assert_eq!(all.rows.len(), PAGE_SIZE);
        assert_eq!(all.rows[0].repo, "api");
        let last = select(
            &repos,
            &RepoQuery {
                page: 9,
                ..Default::default()
            },
        );
        assert_eq!((last.page, last.rows.len()), (3, 22));
        let q = RepoQuery {
            q: "app/".into(),
            sort: SortKey::LastSync,
            ..Default::default()
        };
        let names: Vec<_> = select(&repos, &q)
            .rows
            .iter()
            .map(|r| r.repo.clone())
            .collect();
        assert_eq!(names, ["api", "web"]);
        let errors = select(
            &repos,
            &RepoQuery {
                state: "ERROR".into(),
                ..Default::default()
            },
        );
        assert_eq!(errors.matching, 1);
        let by_generation = select(
            &repos,
            &RepoQuery {
                sort: SortKey::Generation,
                ..Default::default()
            },
        );
        assert_eq!(by_generation.rows[0].repo, "r119");
        repos[5].size_bytes = Some(10);
        repos[7].size_bytes = Some(20);
        repos[9].lag_ms = Some(5);
        let first = |sort| {
            select(
                &repos,
                &RepoQuery {
                    sort,
                    ..Default::default()
                },
            )
            .rows[0]
                .repo
                .clone()
        };
        assert_eq!(first(SortKey::Size), "r007");
        assert_eq!(first(SortKey::Lag), "r009");
    }
}

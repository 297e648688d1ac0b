//! The stand-in forge's listings: projects and their repositories as each forge documents them
//! (the real upstream's directory, read at each request), paged as each forge pages.

use std::collections::BTreeMap;
use std::path::Path;

use axum::response::Response;
use serde_json::{json, Value};

use crate::forge_standin::{bitbucket_page, decode, first, fixture, link_page, Inner};

/// The upstream's tree: project path → repository slugs (projects may nest: `group/sub`).
pub(crate) fn tree(root: &Path) -> BTreeMap<String, Vec<String>> {
    fn walk(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<String>>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        for n in names {
            if let Some(slug) = n.strip_suffix(".git") {
                if !prefix.is_empty() {
                    out.entry(prefix.to_owned())
                        .or_default()
                        .push(slug.to_owned());
                }
            } else {
                let path = if prefix.is_empty() {
                    n.clone()
                } else {
                    format!("{prefix}/{n}")
                };
                out.entry(path.clone()).or_default();
                walk(&dir.join(&n), &path, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, "", &mut out);
    out
}

pub(crate) fn bitbucket(
    tree: &BTreeMap<String, Vec<String>>,
    rest: &str,
    query: &str,
    page_size: usize,
) -> Option<Response> {
    let items: Vec<Value> = if rest == "/rest/api/1.0/projects" {
        let t = first(fixture("bitbucket/projects.json"));
        tree.keys()
            .map(|k| {
                let mut p = t.clone();
                p["key"] = json!(k);
                p["name"] = json!(format!("Project {k}"));
                p
            })
            .collect()
    } else {
        let key = rest
            .strip_prefix("/rest/api/1.0/projects/")?
            .strip_suffix("/repos")?;
        let repos = tree.get(key)?;
        let t = first(fixture("bitbucket/project_repos.json"));
        repos
            .iter()
            .map(|slug| {
                let mut r = t.clone();
                r["slug"] = json!(slug);
                r["name"] = json!(slug);
                r["project"]["key"] = json!(key);
                r
            })
            .collect()
    };
    Some(bitbucket_page(items, query, page_size))
}

fn named_repos(
    tree: &BTreeMap<String, Vec<String>>,
    owner: &str,
    template: &Value,
) -> Option<Vec<Value>> {
    Some(
        tree.get(owner)?
            .iter()
            .map(|name| {
                let mut r = template.clone();
                r["name"] = json!(name);
                r["full_name"] = json!(format!("{owner}/{name}"));
                r["owner"]["login"] = json!(owner);
                r
            })
            .collect(),
    )
}

pub(crate) fn github(
    tree: &BTreeMap<String, Vec<String>>,
    rest: &str,
    query: &str,
    s: &Inner,
    path: &str,
) -> Option<Response> {
    let items = if rest == "/organizations" || rest == "/user/orgs" {
        let t = first(fixture("github/organizations.json"));
        tree.keys()
            .map(|k| {
                let mut o = t.clone();
                o["login"] = json!(k);
                o
            })
            .collect()
    } else if let Some(org) = rest
        .strip_prefix("/orgs/")
        .and_then(|r| r.strip_suffix("/repos"))
    {
        named_repos(tree, org, &first(fixture("github/orgs_repos.json")))?
    } else {
        return None;
    };
    Some(link_page(items, query, s, path))
}

pub(crate) fn gitea(
    tree: &BTreeMap<String, Vec<String>>,
    rest: &str,
    query: &str,
    s: &Inner,
    path: &str,
) -> Option<Response> {
    let items = if rest == "/orgs" {
        let t = first(fixture("gitea/orgs.json"));
        tree.keys()
            .map(|k| {
                let mut o = t.clone();
                o["username"] = json!(k);
                o["name"] = json!(k);
                o["full_name"] = json!(format!("Organisation {k}"));
                o
            })
            .collect()
    } else if let Some(org) = rest
        .strip_prefix("/orgs/")
        .and_then(|r| r.strip_suffix("/repos"))
    {
        named_repos(tree, org, &first(fixture("gitea/orgs_repos.json")))?
    } else {
        return None;
    };
    Some(link_page(items, query, s, path))
}

pub(crate) fn gitlab(
    tree: &BTreeMap<String, Vec<String>>,
    rest: &str,
    query: &str,
    s: &Inner,
    path: &str,
) -> Option<Response> {
    let items = if rest == "/groups" {
        let t = first(fixture("gitlab/groups.json"));
        tree.keys()
            .map(|full| {
                let mut g = t.clone();
                let name = full.rsplit('/').next().unwrap_or(full);
                g["full_path"] = json!(full);
                g["path"] = json!(name);
                g["name"] = json!(name);
                g["full_name"] = json!(full.replace('/', " / "));
                g["parent_id"] = if full.contains('/') {
                    json!(1)
                } else {
                    Value::Null
                };
                g
            })
            .collect()
    } else if let Some(id) = rest
        .strip_prefix("/groups/")
        .and_then(|r| r.strip_suffix("/projects"))
    {
        let group = decode(id);
        tree.get(&group)?;
        let subgroups = query.contains("include_subgroups=true");
        let t = first(fixture("gitlab/group_projects.json"));
        tree.iter()
            .filter(|(ns, _)| **ns == group || (subgroups && ns.starts_with(&format!("{group}/"))))
            .flat_map(|(ns, repos)| repos.iter().map(move |r| (ns.clone(), r.clone())))
            .map(|(ns, r)| {
                let mut p = t.clone();
                p["path"] = json!(r);
                p["name"] = json!(r);
                p["path_with_namespace"] = json!(format!("{ns}/{r}"));
                p["namespace"]["path"] = json!(ns.rsplit('/').next().unwrap_or(&ns));
                p
            })
            .collect()
    } else {
        return None;
    };
    Some(link_page(items, query, s, path))
}

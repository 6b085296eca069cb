//! Settings a client asks for in its startup packet that change whose privileges the session
//! runs with: `role` and `session_authorization`, given as startup parameters or in `options`
//! (`-c role=x`, `--role=x`, what `PGOPTIONS` carries). PostgreSQL applies them before the
//! first statement, so no `SET ROLE` would ever reach the decision point: each is decided here
//! as the statement it stands for (`SET role TO 'x'`), and the connection is refused unless
//! the policy allows that statement outright (review cannot hold a connection that has not
//! started: the client can send the `SET` in the session, where it is held like any other).

use crate::{
    classify::ClassifyCache,
    policy::{self, Action, PolicyState},
    session::Session,
};

/// The settings (name, value) of `params` that change the session's privileges.
pub fn privileged(params: &[(String, String)]) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "options" => found.extend(options(v).into_iter().filter(|(n, _)| is_privileged(n))),
            name if is_privileged(name) => found.push((name.to_string(), v.clone())),
            _ => {}
        }
    }
    found
}

fn is_privileged(name: &str) -> bool {
    matches!(name, "role" | "session_authorization")
}

/// The `-c name=value` / `--name=value` settings of a startup `options` string, as PostgreSQL
/// reads it: words split at unescaped spaces, `\` escaping the next character, names folded to
/// lower case with `-` read as `_`.
fn options(s: &str) -> Vec<(String, String)> {
    let mut words = Vec::new();
    let (mut word, mut escaped) = (String::new(), false);
    for c in s.chars() {
        if escaped {
            word.push(c);
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if c.is_ascii_whitespace() {
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    let mut settings = Vec::new();
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        let setting = if let Some(rest) = w.strip_prefix("--") {
            Some(rest.to_string())
        } else if w == "-c" {
            it.next()
        } else {
            w.strip_prefix("-c").map(str::to_string)
        };
        if let Some((name, value)) = setting.as_deref().and_then(|s| s.split_once('=')) {
            settings.push((
                name.to_ascii_lowercase().replace('-', "_"),
                value.to_string(),
            ));
        }
    }
    settings
}

/// The statement a startup setting stands for.
fn statement(name: &str, value: &str) -> String {
    let value = value.replace('\'', "''");
    match name {
        "session_authorization" => format!("SET SESSION AUTHORIZATION '{value}'"),
        _ => format!("SET {name} TO '{value}'"),
    }
}

/// Why the connection is refused, if a privileged startup setting is not allowed.
pub fn refusal(
    classify: &ClassifyCache,
    pol: &PolicyState,
    session: &Session,
    params: &[(String, String)],
) -> Option<String> {
    let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let user = param("user");
    let database = param("database").or(user);
    for (name, value) in privileged(params) {
        let text = statement(&name, &value);
        for s in classify.classify(&text).iter() {
            let d = policy::decide(
                pol,
                &policy::Request {
                    target: &session.target.config,
                    process: &session.process,
                    identity: &session.identity,
                    database,
                    user,
                    statement: s,
                },
            );
            if d.action != Action::Allow {
                return Some(format!(
                    "hoop: startup setting {name} is refused: policy rule {} decides {} for `{}`; send it as a statement in the session instead",
                    d.rule,
                    d.action.as_str(),
                    statement(&name, "…")
                ));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn finds_role_changes_in_parameters_and_options() {
        let params = p(&[
            ("user", "app"),
            ("role", "admin"),
            (
                "options",
                "-c search_path=x -c role=ops --Session-Authorization=bob -crole=a\\ b",
            ),
            ("application_name", "psql"),
        ]);
        assert_eq!(
            privileged(&params),
            p(&[
                ("role", "admin"),
                ("role", "ops"),
                ("session_authorization", "bob"),
                ("role", "a b"),
            ])
        );
        assert!(privileged(&p(&[("options", "-c search_path=public -c geqo=off")])).is_empty());
        assert!(privileged(&p(&[("options", "-c role")])).is_empty());
    }

    #[test]
    fn statements_quote_the_value() {
        assert_eq!(statement("role", "o'brien"), "SET role TO 'o''brien'");
        assert_eq!(
            statement("session_authorization", "bob"),
            "SET SESSION AUTHORIZATION 'bob'"
        );
    }
}

//! `[challenge]` (the in-page check, passes, the interstitial) and
//! `[tarpit]`: types and validation.

use std::time::Duration;

use crate::raw::{RawChallenge, RawTarpit};
use crate::spans::KeyPath;
use crate::validate::Ctx;

/// `[challenge]`: the in-page browser check and the passes it earns.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Challenge {
    /// Key that signs passes and challenges. Empty: derived from
    /// `protector.secret` (see [`Challenge::signing_secret`]).
    pub secret: String,
    /// Earlier keys, still accepted when verifying (rotation).
    pub old_secrets: Vec<String>,
    /// How long a pass is valid.
    pub pass_ttl: Duration,
    /// Proof-of-work difficulty: leading zero bits of a SHA-256.
    pub difficulty: u8,
    /// How long a challenge may take to be solved; each is single-use.
    pub challenge_ttl: Duration,
    /// Image requests a client may make without a valid pass (before the
    /// check has run on its first page).
    pub grace_images: u32,
    /// The grace budget refills over this period.
    pub grace_period: Duration,
    /// Add the check script to HTML pages of clients without a pass.
    pub inject: bool,
    /// How long the no-JavaScript path makes a client wait.
    pub nojs_delay: Duration,
    /// Solved challenges remembered (against replay) until they expire;
    /// the oldest are forgotten first beyond this.
    pub max_spent: usize,
}

impl Default for Challenge {
    fn default() -> Self {
        Challenge {
            secret: String::new(),
            old_secrets: Vec::new(),
            pass_ttl: Duration::from_secs(24 * 3600),
            difficulty: 8,
            challenge_ttl: Duration::from_secs(300),
            grace_images: 24,
            grace_period: Duration::from_secs(3600),
            inject: true,
            nojs_delay: Duration::from_secs(3),
            max_spent: 100_000,
        }
    }
}

impl Challenge {
    /// The secret passes are signed with: `challenge.secret`, or, when
    /// unset, `protector.secret` (the key is then derived from it under a
    /// separate label, so a pass never doubles as a watermark key).
    pub fn signing_secret<'a>(&'a self, protector_secret: &'a str) -> (&'a str, &'static str) {
        if self.secret.is_empty() {
            (protector_secret, "protector")
        } else {
            (self.secret.as_str(), "challenge")
        }
    }
}

/// `[tarpit]`: caps of the `tarpit` action.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tarpit {
    /// Tarpitted responses at once; beyond, the rule's status is sent.
    pub max_connections: usize,
    /// Tarpitted responses at once per client address.
    pub max_per_client: usize,
    /// Bytes sent per tarpitted response.
    pub max_bytes: usize,
    /// Longest a tarpitted response lasts.
    pub max_duration: Duration,
    /// Pause between two drips.
    pub interval: Duration,
}

impl Default for Tarpit {
    fn default() -> Self {
        Tarpit {
            max_connections: 1000,
            max_per_client: 8,
            max_bytes: 64 * 1024,
            max_duration: Duration::from_secs(60),
            interval: Duration::from_secs(1),
        }
    }
}

/// `v` when it lies in `lo..=hi`; otherwise an error at `path`.
pub(crate) fn in_range(ctx: &mut Ctx<'_>, path: &KeyPath, v: i64, lo: i64, hi: i64) -> Option<i64> {
    if (lo..=hi).contains(&v) {
        Some(v)
    } else {
        ctx.err(path, format!("{v} is out of range ({lo} to {hi})"));
        None
    }
}

/// Validates `[challenge]`.
pub(crate) fn validate_challenge(ctx: &mut Ctx<'_>, c: &RawChallenge) -> Challenge {
    let p = KeyPath::root().key("challenge");
    let d = Challenge::default();
    let secret = crate::validate::read_secret(
        ctx,
        &p,
        "challenge",
        c.secret.as_deref(),
        c.secret_file.as_deref(),
    );
    for (i, s) in c.old_secrets.iter().enumerate() {
        crate::validate::check_secret(ctx, &p.key("old_secrets").index(i), s);
    }
    let day = Duration::from_secs(86_400);
    let pass_ttl = ctx.duration(&p.key("pass_ttl"), &c.pass_ttl, 30 * day);
    if pass_ttl < Duration::from_secs(60) && !ctx.has_problem_at(&p.key("pass_ttl")) {
        ctx.err(&p.key("pass_ttl"), "must be at least 1m");
    }
    let challenge_ttl = ctx.duration(&p.key("challenge_ttl"), &c.challenge_ttl, day);
    if challenge_ttl < Duration::from_secs(10) && !ctx.has_problem_at(&p.key("challenge_ttl")) {
        ctx.err(&p.key("challenge_ttl"), "must be at least 10s");
    }
    let nojs_delay = ctx.duration(&p.key("nojs_delay"), &c.nojs_delay, Duration::from_secs(60));
    if nojs_delay >= challenge_ttl && !challenge_ttl.is_zero() {
        ctx.err(
            &p.key("nojs_delay"),
            "must be shorter than challenge_ttl (the no-JavaScript path could never finish)",
        );
    }
    let grace_period = ctx.duration(&p.key("grace_period"), &c.grace_period, 7 * day);
    if grace_period.is_zero() && !ctx.has_problem_at(&p.key("grace_period")) {
        ctx.err(&p.key("grace_period"), "must be longer than 0s");
    }
    let difficulty = in_range(ctx, &p.key("difficulty"), c.difficulty, 0, 24)
        .map(|v| v as u8)
        .unwrap_or(d.difficulty);
    let grace_images = in_range(ctx, &p.key("grace_images"), c.grace_images, 0, 10_000)
        .map(|v| v as u32)
        .unwrap_or(d.grace_images);
    let max_spent = in_range(ctx, &p.key("max_spent"), c.max_spent, 100, 100_000_000)
        .map(|v| v as usize)
        .unwrap_or(d.max_spent);
    Challenge {
        secret,
        old_secrets: c.old_secrets.clone(),
        pass_ttl,
        difficulty,
        challenge_ttl,
        grace_images,
        grace_period,
        inject: c.inject,
        nojs_delay,
        max_spent,
    }
}

/// Validates `[tarpit]`.
pub(crate) fn validate_tarpit(ctx: &mut Ctx<'_>, t: &RawTarpit) -> Tarpit {
    let p = KeyPath::root().key("tarpit");
    let d = Tarpit::default();
    let max_connections = in_range(
        ctx,
        &p.key("max_connections"),
        t.max_connections,
        0,
        100_000,
    )
    .map(|v| v as usize)
    .unwrap_or(d.max_connections);
    let max_per_client = in_range(ctx, &p.key("max_per_client"), t.max_per_client, 1, 10_000)
        .map(|v| v as usize)
        .unwrap_or(d.max_per_client);
    let max_bytes = in_range(ctx, &p.key("max_bytes"), t.max_bytes, 256, 64 * 1024 * 1024)
        .map(|v| v as usize)
        .unwrap_or(d.max_bytes);
    let hour = Duration::from_secs(3600);
    let max_duration = ctx.duration(&p.key("max_duration"), &t.max_duration, hour);
    let interval = ctx.duration(&p.key("interval"), &t.interval, Duration::from_secs(60));
    if interval < Duration::from_millis(10) && !ctx.has_problem_at(&p.key("interval")) {
        ctx.err(&p.key("interval"), "must be at least 10ms");
    }
    Tarpit {
        max_connections,
        max_per_client,
        max_bytes,
        max_duration,
        interval,
    }
}

#[cfg(test)]
mod tests {
    use crate::Config;

    const BASE: &str = "[server]\nlisten = [\"127.0.0.1:1\"]\n[[site]]\nname = \"a\"\nhosts = [\"a.test\"]\nupstreams = [\"127.0.0.1:2\"]\npolicy = \"off\"\n";

    fn problems(extra: &str) -> Vec<String> {
        match Config::from_toml(&format!("{BASE}{extra}"), "t.toml", None) {
            Ok(_) => Vec::new(),
            Err(e) => e.problems.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn defaults_and_values() {
        let c = Config::from_toml(BASE, "t", None).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.challenge, super::Challenge::default());
        assert_eq!(c.tarpit, super::Tarpit::default());
        let c = Config::from_toml(
            &format!(
                "{BASE}[challenge]\nsecret = \"0123456789abcdef-x\"\nold_secrets = [\"fedcba9876543210-y\"]\ndifficulty = 14\ngrace_images = 40\npass_ttl = \"7d\"\n[tarpit]\nmax_connections = 50\ninterval = \"250ms\"\n"
            ),
            "t",
            None,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.challenge.difficulty, 14);
        assert_eq!(c.challenge.grace_images, 40);
        assert_eq!(c.challenge.pass_ttl.as_secs(), 7 * 86_400);
        assert_eq!(
            c.challenge.signing_secret("p").0,
            "0123456789abcdef-x",
            "the challenge secret wins over protector.secret"
        );
        assert_eq!(c.tarpit.max_connections, 50);
    }

    #[test]
    fn bad_values_name_their_key_and_line() {
        let p = problems(
            "[challenge]\ndifficulty = 40\nsecret = \"short\"\nold_secrets = [\"changeme-changeme\", \"x\"]\npass_ttl = \"soon\"\nnojs_delay = \"10m\"\n[tarpit]\nmax_per_client = 0\ninterval = \"1ms\"\n",
        );
        let want = [
            "challenge.difficulty",
            "challenge.secret",
            "challenge.old_secrets[1]",
            "challenge.pass_ttl",
            "challenge.nojs_delay",
            "tarpit.max_per_client",
            "tarpit.interval",
        ];
        for w in want {
            assert!(
                p.iter().any(|x| x.contains(w) && x.contains("line")),
                "{w} missing in {p:#?}"
            );
        }
    }

    #[test]
    fn a_policy_that_reads_passes_needs_a_key() {
        let src = format!(
            "{}\n[policy.p]\n[[policy.p.rule]]\nname = \"x\"\nmatch = {{ pass = false }}\naction = \"observe\"\n",
            BASE.replace("policy = \"off\"", "policy = \"p\"")
        );
        let err = Config::from_toml(&src, "t", None)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("protector.secret"), "{err}");
        let ok = format!("{src}[challenge]\nsecret = \"0123456789abcdef-x\"\n");
        assert!(Config::from_toml(&ok, "t", None).is_ok());
    }
}

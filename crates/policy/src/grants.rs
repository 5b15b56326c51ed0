//! The `[filesystem]` table and preset merging.
//!
//! Merge rule: the effective grants are the union of every included preset's grants and the
//! policy's own. Presets are resolved depth-first in the order they are listed (a preset's own
//! includes come before its grants), then the policy's own grants follow. A preset reached twice
//! is merged once; a cycle is an error naming the chain. A path granted with different rights in
//! different places keeps all of them: nothing is ever removed.

use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::DeTable;

use crate::LoadContext;
use crate::diag::{Bad, Diagnostic, Report};
use crate::keys;
use crate::model::{AbsPath, Filesystem};
use crate::resolve::{Kind, resolve};
use crate::source::read_text;
use crate::values::abs_path;
use crate::walk::{Fields, Val, array, checked, string};

/// Device nodes no visualization ever gets: they expose physical memory or I/O ports.
const NEVER_DEVICES: &[&str] = &["/dev/mem", "/dev/kmem", "/dev/port"];

/// The grants written in one `[filesystem]` table, before merging.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    /// `None` when the key is absent (a policy then gets the default presets).
    pub(crate) presets: Option<Vec<(String, Range<usize>)>>,
    pub(crate) read: Vec<AbsPath>,
    pub(crate) read_write: Vec<AbsPath>,
    pub(crate) exec: Vec<AbsPath>,
    pub(crate) devices: Vec<AbsPath>,
}

/// Reads a `[filesystem]` table; `None` when any of its values is invalid.
pub(crate) fn read_grants(r: &mut Report<'_>, mut f: Fields<'_, '_>) -> Option<Grants> {
    let presets = f.get(r, "presets", |r, v| array(r, v, string)).optional();
    let read = f.get(r, "read", |r, v| paths(r, v, Right::Read)).or(Vec::new());
    let read_write = f.get(r, "read_write", |r, v| paths(r, v, Right::ReadWrite)).or(Vec::new());
    let exec = f.get(r, "exec", |r, v| paths(r, v, Right::Exec)).or(Vec::new());
    let devices = f.get(r, "devices", |r, v| paths(r, v, Right::Device)).or(Vec::new());
    f.finish();
    Some(Grants {
        presets: presets?,
        read: read?,
        read_write: read_write?,
        exec: exec?,
        devices: devices?,
    })
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Right {
    Read,
    ReadWrite,
    Exec,
    Device,
}

fn paths(r: &mut Report<'_>, v: &Val<'_>, right: Right) -> Option<Vec<AbsPath>> {
    let items = array(r, v, |r, v| checked(r, v, |s| grant_path(s, right)))?;
    Some(items.into_iter().map(|(p, _)| p).collect())
}

/// One grant: an absolute path, never `/` itself, device nodes only in `devices`.
fn grant_path(s: &str, right: Right) -> Result<AbsPath, Bad> {
    let p = abs_path(s)?;
    let text = p.to_string();
    if text == "/" {
        return Err(Bad::new("granting \"/\" gives the whole host filesystem")
            .hint("grant the directories the program needs"));
    }
    let in_dev = text == "/dev" || text.starts_with("/dev/");
    let private_shm = text == "/dev/shm";
    match right {
        Right::Device if !in_dev || text == "/dev" => {
            Err(Bad::new(format!("\"{text}\" is not a device node under /dev"))
                .hint("use read, read_write or exec for files"))
        }
        Right::Device if NEVER_DEVICES.contains(&text.as_str()) => Err(Bad::new(format!(
            "\"{text}\" exposes host memory or I/O ports and is never granted"
        ))),
        Right::Read | Right::ReadWrite | Right::Exec if in_dev && !private_shm => {
            Err(Bad::new(format!("\"{text}\" is under /dev")).hint("list device nodes in devices"))
        }
        _ => Ok(p),
    }
}

/// Merges presets and the policy's own grants into the effective [`Filesystem`].
/// Errors inside preset files are added to `others`; errors at the reference go to `r`.
pub(crate) fn merge(
    r: &mut Report<'_>,
    own: Grants,
    policy: &Path,
    ctx: &LoadContext,
    others: &mut Vec<Diagnostic>,
) -> Option<Filesystem> {
    let mut m = Merger {
        ctx,
        fs: Filesystem::default(),
        stack: Vec::new(),
        merged: Vec::new(),
        ok: true,
        others,
    };
    let presets = own.presets.clone().unwrap_or_else(|| vec![("system-libs".to_string(), 0..0)]);
    for (name, span) in &presets {
        m.include(r, policy, name, span.clone());
    }
    m.add(&own);
    m.ok.then_some(m.fs)
}

struct Merger<'c, 'o> {
    ctx: &'c LoadContext,
    fs: Filesystem,
    /// The chain of presets being resolved, for cycle messages.
    stack: Vec<(String, PathBuf)>,
    merged: Vec<PathBuf>,
    ok: bool,
    others: &'o mut Vec<Diagnostic>,
}

impl Merger<'_, '_> {
    fn include(&mut self, r: &mut Report<'_>, referrer: &Path, name: &str, span: Range<usize>) {
        let path = match resolve(Kind::Preset, name, referrer, self.ctx) {
            Ok(p) => p,
            Err(bad) => {
                r.bad(span, bad);
                self.ok = false;
                return;
            }
        };
        let canonical = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
        if let Some(at) = self.stack.iter().position(|(_, p)| *p == canonical) {
            let mut chain: Vec<&str> = self.stack[at..].iter().map(|(n, _)| n.as_str()).collect();
            chain.push(name);
            r.error(span, format!("preset cycle: {}", chain.join(" -> ")))
                .hints
                .push("remove one of these includes".into());
            self.ok = false;
            return;
        }
        if self.merged.contains(&canonical) {
            return;
        }
        self.stack.push((name.to_string(), canonical.clone()));
        self.load(&path);
        self.stack.pop();
        self.merged.push(canonical);
        self.fs.presets.push(name.to_string());
    }

    /// Reads one preset file, merges its includes depth-first, then its own grants.
    fn load(&mut self, path: &Path) {
        let text = match read_text(path) {
            Ok(t) => t,
            Err(d) => {
                self.fail(vec![d]);
                return;
            }
        };
        let mut pr = Report::new(path, &text);
        if let Some(grants) = parse_preset(&mut pr, &text) {
            for (name, span) in grants.presets.iter().flatten() {
                self.include(&mut pr, path, name, span.clone());
            }
            self.add(&grants);
        }
        if pr.has_errors() {
            self.fail(pr.finish());
        }
    }

    fn fail(&mut self, diags: Vec<Diagnostic>) {
        self.ok = false;
        self.others.extend(diags);
    }

    fn add(&mut self, g: &Grants) {
        union(&mut self.fs.read, &g.read);
        union(&mut self.fs.read_write, &g.read_write);
        union(&mut self.fs.exec, &g.exec);
        union(&mut self.fs.devices, &g.devices);
    }
}

fn union(into: &mut Vec<AbsPath>, add: &[AbsPath]) {
    for p in add {
        if !into.contains(p) {
            into.push(p.clone());
        }
    }
}

/// A preset file: only a `[filesystem]` table.
fn parse_preset(r: &mut Report<'_>, text: &str) -> Option<Grants> {
    let root = crate::policy::parse_toml(r, text)?;
    let root: &DeTable<'_> = root.get_ref();
    let mut top = Fields::open(r, &keys::PRESET, Some(root), 0..0);
    if !top.has("filesystem") {
        r.error(0..0, "a preset must contain a [filesystem] table");
    }
    let fs = top.sub(r, "filesystem");
    top.finish();
    read_grants(r, fs?)
}

//! The metric catalog: each metric registered through [`Builder`] is also
//! recorded as an [`Entry`], and [`markdown`] renders the entries as the
//! table in `docs/metrics.md`, which a test keeps equal to it.

use prometheus::core::Collector;
use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// One metric: what the catalog says about it.
#[derive(Clone, Debug)]
pub struct Entry {
    pub name: String,
    pub kind: Kind,
    pub labels: Vec<String>,
    pub help: String,
}

/// Registers metrics and records each one in the catalog.
pub(crate) struct Builder {
    registry: Registry,
    entries: Vec<Entry>,
}

// Names, labels and buckets are constants of metrics.rs: they are valid,
// and each is registered once in a fresh registry.
#[allow(clippy::expect_used)]
impl Builder {
    pub fn new() -> Self {
        Self {
            registry: Registry::new(),
            entries: Vec::new(),
        }
    }

    fn add<C: Collector + Clone + 'static>(&mut self, c: C, kind: Kind, labels: &[&str]) -> C {
        for desc in c.desc() {
            self.entries.push(Entry {
                name: desc.fq_name.clone(),
                kind,
                labels: labels.iter().map(|l| (*l).to_owned()).collect(),
                help: desc.help.clone(),
            });
        }
        self.registry
            .register(Box::new(c.clone()))
            .expect("a metric registered once");
        c
    }

    pub fn counter(&mut self, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
        let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
        self.add(c, Kind::Counter, labels)
    }

    pub fn plain_counter(&mut self, name: &str, help: &str) -> IntCounter {
        let c = IntCounter::new(name, help).expect("valid counter");
        self.add(c, Kind::Counter, &[])
    }

    pub fn gauge(&mut self, name: &str, help: &str) -> IntGauge {
        let g = IntGauge::new(name, help).expect("valid gauge");
        self.add(g, Kind::Gauge, &[])
    }

    pub fn gauge_vec(&mut self, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
        let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
        self.add(g, Kind::Gauge, labels)
    }

    pub fn float_gauge(&mut self, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
        let g = GaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
        self.add(g, Kind::Gauge, labels)
    }

    pub fn histogram(
        &mut self,
        name: &str,
        help: &str,
        labels: &[&str],
        buckets: Vec<f64>,
    ) -> HistogramVec {
        let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels)
            .expect("valid histogram");
        self.add(h, Kind::Histogram, labels)
    }

    pub fn finish(self) -> (Registry, Vec<Entry>) {
        (self.registry, self.entries)
    }
}

/// The catalog as a Markdown table: name, type, labels, meaning.
pub fn markdown(entries: &[Entry]) -> String {
    let mut out = String::from("| name | type | labels | meaning |\n|---|---|---|---|\n");
    for e in entries {
        let labels = if e.labels.is_empty() {
            "—".to_owned()
        } else {
            e.labels
                .iter()
                .map(|l| format!("`{l}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            e.name,
            e.kind.as_str(),
            labels,
            e.help.replace('|', "\\|")
        ));
    }
    out
}

/// Where the generated table sits in `docs/metrics.md`.
pub const START_MARK: &str = "<!-- catalog:start (generated from crates/sluice-core/src/metrics.rs; SLUICE_BLESS=1 cargo test -p sluice-core catalog rewrites it) -->\n";
pub const END_MARK: &str = "<!-- catalog:end -->";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    fn doc_path() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/metrics.md")
    }

    #[test]
    fn the_catalog_in_the_docs_is_the_registry() {
        let metrics = Metrics::new();
        let table = markdown(metrics.catalog());
        let path = doc_path();
        let doc = std::fs::read_to_string(&path).expect("docs/metrics.md");
        let start = doc.find(START_MARK).expect("the catalog's start mark") + START_MARK.len();
        let end = doc.find(END_MARK).expect("the catalog's end mark");
        if doc[start..end] != table {
            if std::env::var("SLUICE_BLESS").is_ok_and(|v| v == "1") {
                let updated = format!("{}{table}{}", &doc[..start], &doc[end..]);
                std::fs::write(&path, updated).expect("rewrite docs/metrics.md");
                return;
            }
            panic!(
                "docs/metrics.md does not list the metrics metrics.rs registers; \
                 run `SLUICE_BLESS=1 cargo test -p sluice-core catalog` and review the diff.\n\
                 The table should be:\n{table}"
            );
        }
    }

    #[test]
    fn the_catalog_names_every_registered_family() {
        // Touch every metric so that each family renders, then compare the
        // rendered family names with the catalog's.
        let m = Metrics::new();
        for e in m.catalog() {
            assert!(e.name.starts_with("sluice_"), "{}", e.name);
        }
        let families: std::collections::BTreeSet<String> = m
            .registry()
            .gather()
            .iter()
            .map(|f| f.name().to_owned())
            .collect();
        // Families without labels render at once; those with labels only
        // once a series exists, so every rendered one must be in the catalog.
        let names: std::collections::BTreeSet<String> =
            m.catalog().iter().map(|e| e.name.clone()).collect();
        assert!(families.is_subset(&names), "{families:?} vs {names:?}");
        assert_eq!(names.len(), m.catalog().len(), "a metric is declared twice");
    }
}

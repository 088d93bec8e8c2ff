//! `--data-dir` persistence: one JSON snapshot of the catalog and the transaction book, so
//! tables, labels and PREPARED transactions survive a sim restart.
//!
//! Owns the file format and its atomic replacement (write to a temporary file, then rename), so
//! a crash mid-write leaves the previous snapshot. On load, transactions still PREPARE are
//! aborted (their BE contexts died with the process, as in StarRocks) and versions whose publish
//! was pending are applied. Counters, error logs and faults are not persisted. The snapshot is
//! rewritten in full on every committed change: fine for tests and demos, not for big data.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::{Catalog, ChangeBatch};
use crate::state::SimState;
use crate::txn::TxnBook;

const FILE_NAME: &str = "starrocks-sim-state.json";
const FORMAT_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    catalog: Catalog,
    txns: TxnBook,
    /// Committed versions not yet published: (txn id, db, table, batch).
    pending: Vec<(i64, String, String, ChangeBatch)>,
}

fn path(dir: &Path) -> PathBuf {
    dir.join(FILE_NAME)
}

/// Writes the snapshot atomically.
pub(crate) fn save(dir: &Path, state: &SimState) -> io::Result<()> {
    let pending = state
        .pending
        .iter()
        .flat_map(|((db, table), queue)| {
            queue
                .iter()
                .map(move |v| (v.txn_id, db.clone(), table.clone(), v.batch.clone()))
        })
        .collect();
    let snapshot = Snapshot {
        version: FORMAT_VERSION,
        catalog: state.catalog.clone(),
        txns: state.txns.clone(),
        pending,
    };
    let bytes = serde_json::to_vec(&snapshot).map_err(io::Error::other)?;
    fs::create_dir_all(dir)?;
    let tmp = dir.join(format!("{FILE_NAME}.tmp"));
    fs::write(&tmp, bytes)?;
    fs::rename(tmp, path(dir))
}

/// Reads the snapshot, if one exists, and returns the restored catalog and txn book.
pub(crate) fn load(dir: &Path) -> io::Result<Option<(Catalog, TxnBook)>> {
    let bytes = match fs::read(path(dir)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let snapshot: Snapshot = serde_json::from_slice(&bytes).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is not a starrocks-sim snapshot: {e}",
                path(dir).display()
            ),
        )
    })?;
    if snapshot.version != FORMAT_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has snapshot format {}, expected {FORMAT_VERSION}",
                path(dir).display(),
                snapshot.version
            ),
        ));
    }
    let mut catalog = snapshot.catalog;
    let mut txns = snapshot.txns;
    for (txn_id, db, table, batch) in snapshot.pending {
        if let Ok(t) = catalog.table_mut(&db, &table) {
            let _ = t.apply(&batch);
        }
        txns.mark_visible(txn_id);
    }
    txns.abort_all_prepare("coordinate BE is down (sim restarted)");
    Ok(Some((catalog, txns)))
}

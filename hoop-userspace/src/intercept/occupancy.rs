//! How full the pinned maps are, for metrics. Each read opens the pinned maps afresh, so the
//! data path's own map handles (and the locks around them) are never touched by a scrape.

use aya::maps::{HashMap as BpfHashMap, LpmTrie, Map, MapData, MapError};
use hoop_common::{ClientKey, OrigDst, TargetRef, TargetV4, TargetV6, maps};

use super::{Intercept, InterceptError, map_err, pins::Pins};

/// Entries and capacity of one map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapOccupancy {
    pub name: &'static str,
    pub entries: u64,
    pub capacity: u32,
}

/// The maps whose size can grow: targets (configuration) and in-flight connection records.
const COUNTED: [&str; 4] = [
    maps::TARGETS_V4,
    maps::TARGETS_V6,
    maps::BY_COOKIE,
    maps::BY_CLIENT,
];

impl Intercept {
    /// Addresses learned from DNS answers now (a length read under the lock the learning path
    /// holds only while it updates the table).
    pub fn learned_count(&self) -> usize {
        self.learned.lock().unwrap().len()
    }

    /// One syscall per entry; counts are capped at the capacity (an LRU map under churn can make
    /// key iteration restart).
    pub fn map_occupancy(&self) -> Result<Vec<MapOccupancy>, InterceptError> {
        let dir = Pins::new(&self.pin_dir).maps();
        COUNTED
            .iter()
            .map(|&name| {
                let data = MapData::from_pin(dir.join(name)).map_err(map_err(name))?;
                let capacity = data.info().map_err(map_err(name))?.max_entries();
                let map = Map::from_map_data(data).map_err(map_err(name))?;
                let entries = count(name, map, capacity).map_err(map_err(name))?;
                Ok(MapOccupancy {
                    name,
                    entries,
                    capacity,
                })
            })
            .collect()
    }
}

fn count(name: &str, map: Map, capacity: u32) -> Result<u64, MapError> {
    let cap = capacity as usize;
    let n = match name {
        maps::TARGETS_V4 => LpmTrie::<MapData, TargetV4, TargetRef>::try_from(map)?
            .keys()
            .take(cap)
            .count(),
        maps::TARGETS_V6 => LpmTrie::<MapData, TargetV6, TargetRef>::try_from(map)?
            .keys()
            .take(cap)
            .count(),
        maps::BY_COOKIE => BpfHashMap::<MapData, u64, OrigDst>::try_from(map)?
            .keys()
            .take(cap)
            .count(),
        _ => BpfHashMap::<MapData, ClientKey, OrigDst>::try_from(map)?
            .keys()
            .take(cap)
            .count(),
    };
    Ok(n as u64)
}

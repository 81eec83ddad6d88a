//! Records shared by several tables, and paging.

use portcullis_model::{OrgId, OrgSettings, Timestamp};

/// An org as stored.
#[derive(Debug, Clone)]
pub struct OrgRecord {
    /// Id.
    pub id: OrgId,
    /// URL and entity-reference namespace; never changes.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Security settings.
    pub settings: OrgSettings,
    /// Created.
    pub created_at: Timestamp,
    /// Last changed.
    pub updated_at: Timestamp,
}

/// A window into a list: `limit` items from `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Page {
    /// Items to return, 1..=500.
    pub limit: u32,
    /// Items to skip.
    pub offset: u32,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            limit: 50,
            offset: 0,
        }
    }
}

/// One page of a list and the size of the whole list.
#[derive(Debug, Clone)]
pub struct Paged<T> {
    /// The items of this page.
    pub items: Vec<T>,
    /// How many items the whole list has.
    pub total: i64,
}

//! Placeholder: validated settings (being written).

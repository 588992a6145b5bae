//! Working hours and bank holidays: when a working-time deadline falls.

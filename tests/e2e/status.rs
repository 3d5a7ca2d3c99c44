/*! `mosaic-hb status` end to end. */

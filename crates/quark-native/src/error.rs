//! One error enum for the addon; it becomes a coded JS error in exactly one `From` impl.

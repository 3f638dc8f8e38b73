mod abandoned_cart;
mod definition;
mod entry_kinds;
mod exit_on;
mod replay;
mod segments;
mod versions;
mod wait_until;

mod abandoned_cart;
mod definition;
mod exit_on;
mod replay;
mod segments;
mod versions;
mod wait_until;

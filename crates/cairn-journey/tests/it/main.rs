mod abandoned_cart;
mod definition;
mod exit_on;
mod replay;
mod versions;
mod wait_until;

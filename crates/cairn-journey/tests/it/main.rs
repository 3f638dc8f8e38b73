mod abandoned_cart;
mod definition;
mod replay;
mod versions;
mod wait_until;

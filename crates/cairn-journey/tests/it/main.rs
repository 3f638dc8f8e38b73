mod abandoned_cart;
mod definition;
mod replay;
mod versions;

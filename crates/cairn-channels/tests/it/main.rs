//! Channels against real servers: an `aiosmtpd` process for email (installed by
//! tests/channels/setup.sh), a local HTTP receiver for webhooks and SMS.

mod smtp;
mod webhook;

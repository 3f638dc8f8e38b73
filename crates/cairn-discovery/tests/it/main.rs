//! Property tests of the discovery analyses over random journeys: funnels never grow from step
//! to step, and every analysis gives the same answer however customers are split, grouped into
//! segments or ordered.

mod props;

//! A tunnel's response head to the HTTP/1 visitor: the usual one written straight from
//! the RESPONSE frame's bytes ([`ReceivedBlock`]), any other through the typed list's
//! rules ([`for_visitor`], then [`super::encode::encode_response_head`]).
//!
//! The list way decoded the block into `HeaderName`/`HeaderValue` pairs (~0.37k
//! instructions for the benchmark's head), walked them for the rules
//! ([`for_visitor`]'s one-pass check), wrote them and freed them, all between the
//! tunnel's read of the response and the visitor's write. The usual head (a final
//! status with a body, no field the rules drop or change, one `Content-Length`,
//! answering an HTTP/1.1 request kept alive that is not `HEAD`) is the one those rules
//! leave as it is: [`write_block_head`] writes it in one walk of the block, checking
//! each field with the same test ([`plain_field`]) as it goes, and gives up for
//! anything else, which then takes the list way. The visitor gets the same bytes
//! either way (`tests` below: the block way against the list way over a corpus of
//! frames in both field codings; docs/BENCHMARKS.md, seventeenth round).

use bytes::{BufMut, BytesMut};
use http::{StatusCode, Version};
use localtunnels_core::{Header, ReceivedBlock, ResponseHead, StreamKind};
use localtunnels_driver::h1::head::{write_header, write_status_line};
use localtunnels_driver::http::{final_status, BadResponse};

use super::encode::{
    can_have_body_status, encode_response_head, write_date, BadHead, BodySize, Encoder, Reply, Written,
};
use super::response_fields::{for_visitor, plain_field, Shape};

/// Most fields the block way takes: it remembers each name to tell a head whose
/// repeated names are apart (which the list way groups) from one whose are together.
const MAX_FIELDS: usize = 16;

/// A tunnel response's head as checked for the visitor: already written (the block
/// way), or the list with what its check found, to write.
pub(crate) enum StreamHead {
    /// In the write buffer; how its body follows.
    Written(Written),
    /// To write with [`encode_response_head`].
    Listed { headers: Vec<Header>, shape: Shape },
}

/// The fields of a tunnel's response head, as the stream delivered them.
pub(super) enum TunnelFields {
    Block(ReceivedBlock),
    List(Vec<Header>),
}

/// The head of a tunnel response (`status` and `fields`; `end`: no body follows) through
/// the tunnel `name` of a server on `domain`, checked for the visitor of `reply`: the
/// usual one written into `dst` at once, any other checked as a list. The error of a
/// head the visitor may not get ([`for_visitor`]'s).
pub(super) fn checked_head(
    dst: &mut BytesMut,
    reply: Reply,
    status: u16,
    fields: TunnelFields,
    end: bool,
    name: &str,
    domain: &str,
) -> Result<(StatusCode, StreamHead), BadResponse> {
    let headers = match fields {
        TunnelFields::Block(block) => {
            if let Some((status, written)) = write_block_head(dst, reply, status, &block, end) {
                return Ok((status, StreamHead::Written(written)));
            }
            block.headers()
        }
        TunnelFields::List(headers) => headers,
    };
    let (status, headers, shape) = for_visitor(ResponseHead { status, headers }, name, domain)?;
    Ok((status, StreamHead::Listed { headers, shape }))
}

/// Writes a checked head not yet written ([`StreamHead::Listed`]) into `dst` as
/// `write_streamed` always did; `end`: no body follows.
pub(super) fn write_listed(
    dst: &mut BytesMut,
    reply: Reply,
    status: StatusCode,
    mut headers: Vec<Header>,
    shape: Shape,
    end: bool,
) -> Result<Written, BadHead> {
    let size = match shape {
        _ if end => BodySize::Ended,
        // Its `Content-Length` was read by the check.
        Shape::Verbatim { length } => length.map_or(BodySize::Unknown, BodySize::Known),
        Shape::General => body_size(&headers),
    };
    encode_response_head(dst, reply, status, &mut headers, size, shape)
}

/// The size of a tunnel response's body, as `StreamBody` tells hyper.
fn body_size(headers: &[Header]) -> BodySize {
    // `forwardable_response_list` left at most one value, digits only.
    let length = headers
        .iter()
        .find(|(n, _)| n == http::header::CONTENT_LENGTH)
        .and_then(|(_, v)| localtunnels_driver::h1::framing::decimal(v.as_bytes()));
    length.map_or(BodySize::Unknown, BodySize::Known)
}

/// Writes the head of `status` and `block` into `dst` as the list way writes it, when
/// it is the usual head answering the usual request; `None` (and `dst` as it was)
/// for any other. The usual head: a final status that has a body (not 1xx, 204, 304),
/// a body to come (`end` false), fields that [`plain_field`] passes (no hop-by-hop
/// field, no `Set-Cookie`, no `Trailer`, one decimal `Content-Length`), at most
/// [`MAX_FIELDS`], each name's fields together (the list way groups them); the usual
/// request: HTTP/1.1, kept alive, not `HEAD`. For these the list way's rules
/// (`for_visitor`, `encode_response_head`'s plain head) write the status line, each
/// field as it is, `date` when there is none, and the blank line: so does this.
pub(super) fn write_block_head(
    dst: &mut BytesMut,
    reply: Reply,
    status: u16,
    block: &ReceivedBlock,
    end: bool,
) -> Option<(StatusCode, Written)> {
    let plain_reply = reply.version == Version::HTTP_11 && reply.keep_alive && !reply.head;
    if !plain_reply || end || block.len() > MAX_FIELDS {
        return None;
    }
    let status = final_status(status, StreamKind::Http).ok().filter(|s| can_have_body_status(*s))?;
    // Two fields or fewer are always grouped (the second either repeats the first
    // name or is new).
    if block.len() > 2 && !grouped(block) {
        return None;
    }
    let start = dst.len();
    write_status_line(dst, Version::HTTP_11, status);
    let (mut length, mut trailer, mut wrote_date) = (None, false, false);
    let mut plain = true;
    for (name, value) in block.fields() {
        if !plain_field(name, value, &mut length, &mut trailer) {
            plain = false;
            break;
        }
        wrote_date |= name == b"date";
        write_header(dst, name, value);
    }
    let length = length.flatten().filter(|_| plain && !trailer);
    let Some(length) = length else {
        dst.truncate(start);
        return None;
    };
    if !wrote_date {
        write_date(dst);
    }
    dst.put_slice(b"\r\n");
    Some((status, Written { encoder: Encoder::Length(length), last: false }))
}

/// Whether each name's fields in `block` (at most [`MAX_FIELDS`]) are together, as
/// `group_by_name` leaves a list as it is: a name like the one before continues its
/// group, a name seen before that is out of its group (the list way moves it up).
fn grouped(block: &ReceivedBlock) -> bool {
    let mut names: [&[u8]; MAX_FIELDS] = [&[]; MAX_FIELDS];
    for (i, (name, _)) in block.fields().enumerate().take(MAX_FIELDS) {
        if i > 1 && name != names[i - 1] && names[..i - 1].contains(&name) {
            return false;
        }
        names[i] = name;
    }
    true
}

#[cfg(test)]
mod tests;

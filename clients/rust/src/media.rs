//! `Client::list_media`: ListMedia page by page.

use crate::pb::{self, Media};
use crate::{Client, Error};

/// The user's media items, newest first, fetched one page per `next_page` call.
#[must_use]
pub struct MediaPages {
    client: Client,
    user: String,
    page_size: u32,
    /// The token of the next page; `None` once the last page was returned.
    next: Option<String>,
}

impl MediaPages {
    pub(crate) fn new(client: Client, user: &str) -> MediaPages {
        MediaPages {
            client,
            user: user.to_owned(),
            page_size: 0,
            next: Some(String::new()),
        }
    }

    /// Items per page (0 = the server's default, 50; at most 1000).
    pub fn page_size(mut self, page_size: u32) -> Self {
        self.page_size = page_size;
        self
    }

    /// The next page, or `None` after the last one.
    pub async fn next_page(&mut self) -> Option<Result<Vec<Media>, Error>> {
        let page_token = self.next.take()?;
        let request = pb::ListMediaRequest {
            user_id: self.user.clone(),
            page_size: self.page_size,
            page_token,
        };
        match self.client.stub().list_media(request).await {
            Ok(reply) => {
                let reply = reply.into_inner();
                if !reply.next_page_token.is_empty() {
                    self.next = Some(reply.next_page_token);
                }
                Some(Ok(reply.media))
            }
            Err(status) => Some(Err(status.into())),
        }
    }

    /// Every remaining item, all pages.
    pub async fn all(mut self) -> Result<Vec<Media>, Error> {
        let mut media = Vec::new();
        while let Some(page) = self.next_page().await {
            media.extend(page?);
        }
        Ok(media)
    }
}

// Live updates: the change feed, long-polled (`GET /changes?after=&wait=25`). It works the same through `s3kv
// console`'s forwarding and straight to s3kv-local, with any key that reads; push (a WebSocket) would need the
// local server to proxy WebSockets and the key in the page's tokens. The feed's cursor is taken before the keys
// are listed, so nothing that changes while listing is missed.
import * as api from "./api.js";
export async function follow(relist, changed, state) {
    let cursor = null;
    let pause = 1000;
    let listed = false;
    for (;;) {
        try {
            if (cursor === null) {
                cursor = (await api.changes(null, 0)).cursor;
                await relist();
                listed = true;
            }
            state("live", "following changes");
            const page = await api.changes(cursor, 25);
            cursor = page.cursor;
            pause = 1000;
            if (page.changes.length > 0)
                changed(page.changes);
        }
        catch (error) {
            if (error instanceof api.ApiError && error.status === 410) {
                // The feed moved past the cursor: list again from a new one.
                cursor = null;
                continue;
            }
            const detail = error instanceof Error ? error.message : String(error);
            if (!listed) {
                // No feed (Valkey down answers 503): the keys are still worth showing, only not live.
                listed = true;
                await relist().catch(() => undefined);
            }
            state(error instanceof api.ApiError && error.status === 403 ? "off" : "reconnecting", detail);
            await new Promise((resolve) => window.setTimeout(resolve, pause));
            pause = Math.min(pause * 2, 30000);
        }
    }
}

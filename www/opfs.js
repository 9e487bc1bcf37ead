// Models opened from this computer live in the origin private file system (OPFS,
// navigator.storage.getDirectory()), one folder each under kpl-models/. The page
// stores them (stored-models.js); the worker reads them through URLs of the form
// `opfs:/kpl-models/<id>/<file>`, so a stored model loads through the same code as a
// served one (relative paths in its manifest resolve inside its folder). Nothing here
// touches the network.

export const MODELS_DIR = 'kpl-models';

/** The URL of a stored model's folder (ends in '/'). */
export const storedModelBase = (id) => `opfs:/${MODELS_DIR}/${encodeURIComponent(id)}/`;

/** The folder handle for the path segments, or null when it does not exist. */
async function directory(segments, create = false) {
  let dir = await navigator.storage.getDirectory();
  for (const s of segments) {
    try {
      dir = await dir.getDirectoryHandle(s, { create });
    } catch (e) {
      if (e.name === 'NotFoundError' || e.name === 'TypeMismatchError') return null;
      throw e;
    }
  }
  return dir;
}

/** The stored-models folder (created when asked). */
export const modelsDirectory = (create = false) => directory([MODELS_DIR], create);

/**
 * A Response for an `opfs:` URL: the file with its Content-Length, or a 404 when it
 * is not there. Only plain segments are followed (no '.', '..' or empty ones).
 */
export async function opfsResponse(url) {
  const segments = new URL(url).pathname.split('/').slice(1).map(decodeURIComponent);
  const plain = segments.length >= 2 && segments.every((s) => s && s !== '.' && s !== '..' && !s.includes('/'));
  const notFound = () => new Response(`${url}: not stored in this browser`, { status: 404, statusText: 'Not Found' });
  if (!plain) return notFound();
  const dir = await directory(segments.slice(0, -1));
  if (!dir) return notFound();
  let file;
  try {
    file = await (await dir.getFileHandle(segments.at(-1))).getFile();
  } catch (e) {
    if (e.name === 'NotFoundError' || e.name === 'TypeMismatchError') return notFound();
    throw e;
  }
  return new Response(file, { headers: { 'Content-Length': String(file.size), 'Content-Type': 'application/octet-stream' } });
}

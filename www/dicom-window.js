// The window (VOI) choice of a greyscale DICOM card: the windows the file carries
// (Window Center / Width, with their explanations: `dicomSummary().windows`), and for
// CT the usual presets; the worker renders with the choice (`voi` of an embed-images
// item; src/preprocess/dicom/voi.rs) and the card says which window was used.

/**
 * CT presets, centre and width in Hounsfield units: the conventional values taught
 * in radiology and listed in Radiopaedia's "Windowing (CT)" article (lung W1500 L−600,
 * mediastinum W350 L50, bone W2000 L500, brain W80 L40). Shown for Modality CT only.
 */
export const CT_PRESETS = Object.freeze([
  Object.freeze({ name: 'Lung', center: -600, width: 1500 }),
  Object.freeze({ name: 'Mediastinum', center: 50, width: 350 }),
  Object.freeze({ name: 'Bone', center: 500, width: 2000 }),
  Object.freeze({ name: 'Brain', center: 40, width: 80 }),
]);

/**
 * The choices a card offers: `{label, voi}`, `voi` null for the default rule (the
 * file's first window, else the frame's minimum to maximum), `{index}` for the
 * file's window `index` (from 0), `{center, width}` for a preset.
 * @param {import('./protocol.js').DicomSummary} dicom
 * @returns {{label: string, voi: import('./protocol.js').DicomWindowChoice | null}[]}
 */
export function windowChoices(dicom) {
  const choices = [{ label: 'Default (the file\'s first window, else its full range)', voi: null }];
  (dicom.windows ?? []).forEach((w, index) => {
    // Numbered from 0, as `kpl --voi N` and the card's "Window used" count them.
    const why = w.explanation ? `, ${w.explanation}` : '';
    choices.push({ label: `File window ${index}${why}: C ${w.center} / W ${w.width}`, voi: { index } });
  });
  if (dicom.modality === 'CT') {
    for (const p of CT_PRESETS) {
      choices.push({ label: `${p.name} preset: C ${p.center} / W ${p.width}`, voi: { center: p.center, width: p.width } });
    }
  }
  return choices;
}

/**
 * Whether the card of this summary offers a window choice: greyscale images (colour
 * has no VOI transformation) with something besides the default to choose.
 */
export function offersWindow(dicom) {
  return Boolean(dicom) && /^MONOCHROME[12]$/.test(dicom.photometric_interpretation ?? '') && windowChoices(dicom).length > 1;
}

/**
 * A labelled `<select>` of `windowChoices(dicom)` with `current` selected; calls
 * `onChoose(voi)` when the user picks another.
 */
export function windowSelect(dicom, current, onChoose) {
  const key = (voi) => JSON.stringify(voi ?? null);
  const select = document.createElement('select');
  select.className = 'dicom-window';
  select.setAttribute('aria-label', 'DICOM window (re-classifies this image)');
  for (const { label, voi } of windowChoices(dicom)) {
    const option = document.createElement('option');
    option.value = key(voi);
    option.textContent = label;
    option.selected = key(voi) === key(current);
    select.append(option);
  }
  select.addEventListener('change', () => onChoose(JSON.parse(select.value)));
  const wrap = document.createElement('label');
  wrap.className = 'dicom-window-choice';
  wrap.append('Window: ', select);
  return wrap;
}

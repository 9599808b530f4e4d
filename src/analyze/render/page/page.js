// Sorts a table by the clicked column: numbers by value, text by text.
for (const table of document.querySelectorAll("table.sortable")) {
  table.querySelectorAll("th").forEach((th, col) => {
    th.addEventListener("click", () => {
      const asc = !th.classList.contains("asc");
      table.querySelectorAll("th").forEach((o) => o.classList.remove("asc", "desc"));
      th.classList.add(asc ? "asc" : "desc");
      const body = table.tBodies[0];
      const key = (tr) => tr.children[col].dataset.v;
      const rows = Array.from(body.rows);
      const numeric = rows.every((tr) => /^-?[0-9]+$/.test(key(tr)));
      rows.sort((a, b) => {
        const [x, y] = [key(a), key(b)];
        const c = numeric ? (BigInt(x) < BigInt(y) ? -1 : BigInt(x) > BigInt(y) ? 1 : 0) : x.localeCompare(y);
        return asc ? c : -c;
      });
      rows.forEach((tr) => body.appendChild(tr));
    });
  });
}

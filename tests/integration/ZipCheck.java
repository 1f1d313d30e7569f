// Reads a ZIP front to back with java.util.zip.ZipInputStream, the way streaming Java clients
// (and dcm4che-based tools) do: no central directory, every entry read fully, CRC checked by
// ZipInputStream itself. Prints "name<TAB>size<TAB>crc32-hex" per entry, then "entries<TAB>N".
// Exit 1 with "ZipException: ..." (or another IOException) on stderr when Java refuses the stream (for example a STORED
// entry with a data descriptor: "only DEFLATED entries can have EXT descriptor").
//
// Usage: java tests/integration/ZipCheck.java FILE.zip   (or "-" to read standard input)

import java.io.BufferedInputStream;
import java.io.FileDescriptor;
import java.io.FileInputStream;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.InputStream;
import java.io.PrintStream;
import java.nio.charset.StandardCharsets;
import java.util.zip.CRC32;
import java.util.zip.ZipEntry;
import java.util.zip.ZipException;
import java.util.zip.ZipInputStream;

public class ZipCheck {
    public static void main(String[] args) throws IOException {
        if (args.length != 1) {
            System.err.println("usage: java ZipCheck.java FILE.zip|-");
            System.exit(2);
        }
        PrintStream out = new PrintStream(
            new FileOutputStream(FileDescriptor.out), true, StandardCharsets.UTF_8);
        InputStream raw = args[0].equals("-") ? System.in : new FileInputStream(args[0]);
        byte[] buf = new byte[1 << 16];
        int count = 0;
        try (ZipInputStream zin = new ZipInputStream(
                new BufferedInputStream(raw, 1 << 16), StandardCharsets.UTF_8)) {
            ZipEntry entry;
            while ((entry = zin.getNextEntry()) != null) {
                long size = 0;
                CRC32 crc = new CRC32();
                int n;
                while ((n = zin.read(buf)) > 0) {
                    size += n;
                    crc.update(buf, 0, n);
                }
                // After the entry is read, ZipInputStream has filled size and CRC from the local
                // header or the data descriptor and has already compared them with the data.
                if (entry.getSize() != -1 && entry.getSize() != size) {
                    throw new ZipException(
                        "size mismatch for " + entry.getName() + ": " + entry.getSize()
                        + " != " + size);
                }
                out.printf("%s\t%d\t%08x%n", entry.getName(), size, crc.getValue());
                count++;
            }
        } catch (IOException ex) {  // ZipException, EOFException, ...
            out.flush();
            System.err.println(ex.getClass().getSimpleName() + ": " + ex.getMessage()
                + " (after " + count + " entries)");
            System.exit(1);
        }
        out.printf("entries\t%d%n", count);
        out.flush();
    }
}

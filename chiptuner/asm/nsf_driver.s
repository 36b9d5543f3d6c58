; chiptuner's NSF driver: replays the chip model's register writes, one frame per PLAY call.
;
; The song data is a byte stream in 4 KB banks 1, 2, ... read through the window
; $9000-$9FFF (the NSF bank register $5FF9); bank 0 at $8000 holds this code. The stream:
;
;   $00-$17  rr vv : write vv to $4000 + rr
;   $80-$FE        : the frame ends here; skip the next (byte - $80) PLAY calls
;   $FF            : the song ends; later PLAY calls do nothing
;
; INIT plays frame 0 itself, so frame f sounds at f frames from the start (a player's first
; PLAY call comes one frame after INIT). A frame's writes come in the order the chip model
; gives them. Building:
;   ca65 nsf_driver.s -o nsf_driver.o && ld65 -C nsf_driver.cfg nsf_driver.o -o nsf_driver.bin

WINDOW      = $9000     ; where the data banks are mapped
WINDOW_END  = $A0       ; high byte just past the window
BANK_REG    = $5FF9     ; NSF bank register of $9000-$9FFF
FIRST_BANK  = 1
END_FRAME   = $80
END_SONG    = $FF

.zeropage
pointer:    .res 2      ; next byte of the stream, inside the window
bank:       .res 1      ; bank mapped at the window
wait:       .res 1      ; PLAY calls still to skip
done:       .res 1      ; nonzero once the song has ended

.code
            jmp init    ; $8000: INIT (A = song, X = NTSC/PAL; one song, NTSC)
            jmp play    ; $8003: PLAY, once per frame

init:       lda #<WINDOW
            sta pointer
            lda #>WINDOW
            sta pointer+1
            lda #FIRST_BANK
            sta bank
            sta BANK_REG
            lda #0
            sta wait
            sta done
            jmp play            ; frame 0 at INIT's time: players call PLAY first a frame later

play:       lda done
            bne @return
            lda wait
            beq @read
            dec wait
@return:    rts
@read:      jsr next_byte
            bmi @control        ; $80-$FF
            tax                 ; register offset
            jsr next_byte
            sta $4000,x
            jmp @read
@control:   cmp #END_SONG
            beq @end
            and #$7F
            sta wait
            rts
@end:       sta done
            rts

; A = the next stream byte (flags set by it); moves the pointer on, switching banks at the window's end.
next_byte:  ldy #0
            lda (pointer),y
            php
            inc pointer
            bne @same
            inc pointer+1
            ldy pointer+1
            cpy #WINDOW_END
            bne @same
            ldy #>WINDOW
            sty pointer+1
            inc bank
            ldy bank
            sty BANK_REG
@same:      plp
            rts
